"""Bad input gets a clear error naming the bad value and what was expected, in both twins."""

from __future__ import annotations

import numpy as np
import pytest

from compare.frameworks import load_twin
from shared.data import InputError


@pytest.fixture(scope="module", params=["torch", "tensorflow"])
def twin_and_model(request, tiny_spec):
    twin = load_twin(request.param, "classification")
    return twin, twin.task.build_model(tiny_spec)


def _good(n=2):
    return np.random.default_rng(0).uniform(size=(n, 16, 16, 3)).astype(np.float32)


@pytest.mark.parametrize("images,message", [
    (_good()[0], r"expected rank 4 \[N, H, W, C\] \(NHWC\); received shape \(16, 16, 3\) \(rank 3\)"),
    (_good()[..., :1], r"expected 3 channels in the last axis \(NHWC\); received shape \(2, 16, 16, 1\)"),
    (_good().transpose(0, 3, 1, 2), r"expected 3 channels.*received shape \(2, 3, 16, 16\) \(is it NCHW\?"),
    (_good().astype(np.float64), r"expected dtype float32; received float64"),
    ((_good() * 255).astype(np.uint8), r"expected dtype float32; received uint8"),
    (np.zeros((0, 16, 16, 3), np.float32), r"expected at least one image"),
    ([[1.0]], r"expected a numpy array of shape \[N, H, W, C\]; received list"),
])
def test_bad_images_rejected(twin_and_model, images, message):
    twin, model = twin_and_model
    with pytest.raises(InputError, match=message):
        twin.task.predict(model, images)


def test_nan_rejected(twin_and_model):
    twin, model = twin_and_model
    images = _good()
    images[1, 3, 4, 0] = np.nan
    images[0, 0, 0, 2] = np.inf
    with pytest.raises(InputError, match=r"expected finite values; received 2 NaN/inf values"):
        twin.task.predict(model, images)


def test_bad_labels_rejected(twin_and_model, tiny_spec, tiny_data):
    twin, model = twin_and_model
    from shared.data import check_labels

    with pytest.raises(InputError, match=r"expected values in \[0, 10\); received range \[0, 12\]"):
        check_labels(np.array([0, 12]), num_classes=10)
    with pytest.raises(InputError, match=r"expected 4 labels \(one per image\); received 3"):
        twin.task.train_steps(model, tiny_spec, tiny_data.train.images[:4], tiny_data.train.labels[:3],
                              [np.arange(2)], tiny_spec.train)


def test_unknown_device(twin_and_model):
    twin, _ = twin_and_model
    with pytest.raises(ValueError, match=r"unknown device 'tpu'; expected one of \['cpu', 'cuda', 'auto'\]"):
        twin.tensors.resolve_device("tpu")
