"""Data augmentation (PyTorch twin): the twin contract of this task (the classification network and loss,
trained with torchvision.transforms.v2 on the fly) and the ops with fixed parameters."""

from ..classification.loss import compute_loss
from ..classification.model import build_model, predict
from ..classification.train import train_steps
from .ops import apply_op, augment_batch, build_pipeline
from .train import evaluate, train

__all__ = ["apply_op", "augment_batch", "build_model", "build_pipeline", "compute_loss", "evaluate", "predict",
           "train", "train_steps"]
