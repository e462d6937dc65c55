"""Semantic segmentation (PyTorch twin): FCN, U-Net and DeepLab-style segmenters, their loss, training and metrics."""

from .loss import compute_loss
from .model import Segmenter, build_model, predict
from .train import evaluate, train, train_steps

__all__ = ["Segmenter", "build_model", "compute_loss", "evaluate", "predict", "train", "train_steps"]
