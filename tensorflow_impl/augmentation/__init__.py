"""Data augmentation (TensorFlow twin): the twin contract of this task (the classification network and loss,
trained with Keras preprocessing layers on the fly) and the ops with fixed parameters."""

from ..classification.loss import compute_loss
from ..classification.model import build_functional, build_model, predict
from ..classification.train import train_steps
from .ops import apply_op, augment_batch, build_pipeline
from .train import evaluate, train

# tfmot rebuilds the network as the classifier's tf_keras functional twin (tensorflow_impl/quantize.py).
FRAMEWORK_SPECIFIC = {
    "build_functional": "tfmot takes tf_keras models only: the network rebuilt as the classifier's functional "
                        "twin; torch's quantization and pruning work on the model itself",
}

__all__ = ["FRAMEWORK_SPECIFIC", "apply_op", "augment_batch", "build_functional", "build_model", "build_pipeline",
           "compute_loss", "evaluate", "predict", "train", "train_steps"]
