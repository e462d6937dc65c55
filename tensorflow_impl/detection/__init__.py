"""Object detection (TensorFlow twin): the SSD-style single-shot detector and the twin contract of this task."""

from .loss import compute_loss
from .model import build_model, export_view, finish_export, predict
from .postprocess import postprocess
from .ssd import SSD
from .train import detect, evaluate, train, train_steps

__all__ = ["SSD", "build_model", "compute_loss", "detect", "evaluate", "export_view", "finish_export", "postprocess",
           "predict", "train", "train_steps"]
