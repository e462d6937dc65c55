"""Training and evaluation of the transfer-learning network: the classification twin's loop on the target."""

from __future__ import annotations

from shared.data.classification import ClassificationData, Split
from shared.data.transfer_learning import load
from shared.specs.transfer_learning import TransferSpec

from ..classification.train import evaluate as evaluate_classifier
from ..classification.train import train as train_classifier
from .model import TransferNet


def evaluate(model: TransferNet, split: Split, spec: TransferSpec, device: str = "cpu") -> dict:
    """accuracy, balanced_accuracy and per_class_recall on ``split`` of the target."""
    return evaluate_classifier(model, split, spec, device)


def train(spec: TransferSpec, data: ClassificationData | None = None, *, model: TransferNet | None = None,
          device: str = "cpu", progress: bool = True) -> tuple[TransferNet, list[dict]]:
    """Train ``model`` on the target (its frozen layers stay as they are); returns it and per-epoch history.

    ``model`` holds the starting weights: the pretrained body and a new head, which the report's initialisation
    builds from the source run's cache. Without it only ``scratch`` can start (from the seeded initialisation).
    """
    if model is None and spec.body_from is not None:
        raise ValueError(f"strategy {spec.strategy!r} starts from the trained body of {spec.body_from!r}: pass "
                         f"model= holding it (twinvision report builds it from that run's cache), or use "
                         f"strategy 'scratch'")
    if model is None:
        model = _seeded_model(spec)
    return train_classifier(spec, data or load(spec), model=model, device=device, progress=progress)


def _seeded_model(spec: TransferSpec) -> TransferNet:
    import keras

    from .model import build_model

    keras.utils.set_random_seed(spec.train.seed)
    return build_model(spec)
