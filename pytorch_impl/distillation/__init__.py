"""Knowledge distillation (PyTorch twin): the twin contract of this task; the student is the classification
twin's ResNet, the loss the distillation loss."""

from ..classification.model import predict
from .loss import compute_loss, distillation_loss
from .model import Distiller, build_model
from .train import evaluate, train, train_steps

__all__ = ["Distiller", "build_model", "compute_loss", "distillation_loss", "evaluate", "predict", "train",
           "train_steps"]
