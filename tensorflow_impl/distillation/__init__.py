"""Knowledge distillation (TensorFlow twin): the twin contract of this task; the student is the classification
twin's ResNet, the loss the distillation loss."""

from ..classification.model import build_functional, predict
from .loss import compute_loss, distillation_loss
from .model import Distiller, build_model
from .train import evaluate, train, train_steps

# tfmot rebuilds the student as the classifier's tf_keras functional twin (tensorflow_impl/quantize.py).
FRAMEWORK_SPECIFIC = {
    "build_functional": "tfmot takes tf_keras models only: the student rebuilt as the classifier's functional "
                        "twin; torch's quantization and pruning work on the model itself",
}

__all__ = ["Distiller", "FRAMEWORK_SPECIFIC", "build_functional", "build_model", "compute_loss", "distillation_loss",
           "evaluate", "predict", "train", "train_steps"]
