"""Transfer learning (TensorFlow twin): the twin contract of this task; the network and loss are the
classification twin's, with the spec's layers frozen."""

from ..classification.loss import compute_loss
from ..classification.model import build_functional, predict
from ..classification.train import train_steps
from .model import TransferNet, build_model
from .train import evaluate, train

# tfmot rebuilds the network as the classifier's tf_keras functional twin (tensorflow_impl/quantize.py).
FRAMEWORK_SPECIFIC = {
    "build_functional": "tfmot takes tf_keras models only: the network rebuilt as the classifier's functional "
                        "twin; torch's quantization and pruning work on the model itself",
}

__all__ = ["FRAMEWORK_SPECIFIC", "TransferNet", "build_functional", "build_model", "compute_loss", "evaluate",
           "predict", "train", "train_steps"]
