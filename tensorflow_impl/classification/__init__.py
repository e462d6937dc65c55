"""Classification and feature extraction (TensorFlow twin): the twin contract of this task."""

from .loss import compute_loss
from .model import BasicBlock, Bottleneck, ResNet, build_model, predict
from .train import evaluate, train, train_steps

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "build_model", "compute_loss", "evaluate", "predict", "train",
           "train_steps"]
