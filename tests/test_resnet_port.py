"""torchvision's own ResNets are the reference: their state_dict loads into both twins unchanged.

torchvision's ResNet-18 (seeded random init, BatchNorm given non-trivial
statistics and affine parameters) and the Keras twin loaded with its
state_dict must agree on eval-mode logits at 224x224 within 1e-4 x max|logit|.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from shared import weights as W
from shared.specs.classification import resnet18, resnet50


def _torchvision_reference(builder, seed: int = 0):
    torch.manual_seed(seed)
    ref = builder(weights=None).eval()
    tensors = {k: v.numpy() for k, v in ref.state_dict().items() if W.is_canonical_key(k)}
    tensors = W.randomize_batchnorm(tensors, seed)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=False)
    return ref, tensors


def _images(n: int, size: int = 224) -> np.ndarray:
    # Real photographs, not noise: skimage's astronaut and coffee, resized, ImageNet-normalised.
    from skimage import data
    from skimage.transform import resize

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()][:n]
    x = np.stack([resize(p, (size, size), anti_aliasing=True) for p in photos]).astype(np.float32)
    return ((x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).astype(np.float32)


@pytest.mark.parametrize("name,builder,spec_fn,n", [
    ("resnet18", torchvision.models.resnet18, resnet18, 2),
    pytest.param("resnet50", torchvision.models.resnet50, resnet50, 1, marks=pytest.mark.slow),
])
def test_torchvision_resnet_loads_into_keras_twin(name, builder, spec_fn, n):
    from tensorflow_impl.bridge import import_weights
    from tensorflow_impl.classification import build_model, predict

    ref, tensors = _torchvision_reference(builder)
    images = _images(n)
    with torch.inference_mode():
        expected = ref(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
        stem = ref.relu(ref.bn1(ref.conv1(torch.from_numpy(images.transpose(0, 3, 1, 2)))))
    assert (stem > 0).float().mean() > 0.05, "activations are (nearly) all zero: the test would prove nothing"
    assert np.abs(expected).max() > 0

    spec = spec_fn()
    model = import_weights(build_model(spec), tensors, source=f"torchvision {name}")
    got = predict(model, images)["logits"]
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= spec.tolerances.forward * scale, \
        f"max diff {np.abs(got - expected).max():.3g} vs tol {spec.tolerances.forward * scale:.3g}"
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_torchvision_state_dict_loads_into_torch_twin_strictly():
    """Same names and shapes as torchvision: the PyTorch twin takes its state_dict with strict=True."""
    from pytorch_impl.classification import build_model

    ref = torchvision.models.resnet18(weights=None)
    model = build_model(resnet18())
    model.load_state_dict(ref.state_dict(), strict=True)
    with torch.inference_mode():
        x = torch.from_numpy(_images(1).transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(model.eval()(x)["logits"].numpy(), ref.eval()(x).numpy())
