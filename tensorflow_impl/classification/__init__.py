"""Classification and feature extraction (TensorFlow twin): the twin contract of this task."""

from .loss import compute_loss
from .model import FRAMEWORK_SPECIFIC, BasicBlock, Bottleneck, ResNet, build_functional, build_model, predict
from .train import evaluate, train, train_steps

__all__ = ["FRAMEWORK_SPECIFIC", "BasicBlock", "Bottleneck", "ResNet", "build_functional", "build_model", "compute_loss", "evaluate", "predict", "train",
           "train_steps"]
