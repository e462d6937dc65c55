"""Instance segmentation (PyTorch twin): the Mask R-CNN-style model, its loss, post-processing and training."""

from .loss import compute_loss
from .model import MaskRCNN, build_model, export_view, finish_export, predict
from .postprocess import postprocess
from .train import evaluate, segment, train, train_steps

__all__ = ["MaskRCNN", "build_model", "compute_loss", "evaluate", "export_view", "finish_export", "postprocess",
           "predict", "segment", "train", "train_steps"]
