"""Transfer learning (PyTorch twin): the twin contract of this task; the network and loss are the
classification twin's, with the spec's layers frozen."""

from ..classification.loss import compute_loss
from ..classification.model import predict
from ..classification.train import train_steps
from .model import TransferNet, build_model
from .train import evaluate, train

__all__ = ["TransferNet", "build_model", "compute_loss", "evaluate", "predict", "train", "train_steps"]
