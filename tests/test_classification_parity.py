"""Classification twins beyond the registry-driven tests (L1-L4 in tests/parity_mixin.py, bad images in
tests/test_bad_input.py): every pooling kind and the bottleneck block, the L2 pool, the feature API, bad
labels, and forward parity on a GPU."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from compare.parity import forward_parity, gradient_parity
from shared.data import InputError, check_labels
from shared.specs import get_spec

RUN = ("classification", None)   # the registry model of this file: conftest's twins load it


def _variant(**model_changes):
    spec = get_spec("classification", "tiny")
    return dataclasses.replace(spec, model=dataclasses.replace(spec.model, **model_changes))


@pytest.mark.parametrize("stem_pool", ["max", "avg", "l2"])
@pytest.mark.parametrize("head_pool", ["max", "avg", "l2"])
def test_pooling_variants_forward_and_gradients(twins, tiny_data, stem_pool, head_pool):
    # The imagenet stem carries the 3x3/2 padded pool whose padding differs between frameworks.
    spec = _variant(stem="imagenet", stem_pool=stem_pool, head_pool=head_pool)
    images = tiny_data.train.images[:4]
    entries = forward_parity(spec, twins, images) + gradient_parity(spec, twins, images, tiny_data.train.labels[:4])
    bad = [e for e in entries if not e["ok"]]
    assert not bad, bad


def test_bottleneck_block(twins, tiny_data):
    spec = _variant(block="bottleneck", widths=(4, 8))
    images = tiny_data.train.images[:4]
    entries = forward_parity(spec, twins, images) + gradient_parity(spec, twins, images, tiny_data.train.labels[:4])
    assert not [e for e in entries if not e["ok"]]


def test_l2_pool_matches_torch_lppool2d():
    """The Keras L2 pool is hand-written: test it against torch.nn.LPPool2d on odd sizes and zero windows."""
    import torch
    from torch import nn

    from tensorflow_impl.layers import Pool2d

    rng = np.random.default_rng(0)
    x = np.maximum(rng.normal(size=(2, 9, 11, 3)), 0).astype(np.float32)
    x[:, :3, :3, :] = 0.0  # windows of zeros: value 0 and a finite gradient in torch
    ref = nn.LPPool2d(2.0, 3, 2)(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    ours = Pool2d("l2", 3, 2, 0)(x).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)

    import tensorflow as tf

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = tf.reduce_sum(Pool2d("l2", 3, 2, 0)(xt))
    assert np.isfinite(tape.gradient(y, xt).numpy()).all()


def test_feature_extraction_api(twins, tiny_spec, tiny_data):
    """forward_features gives every stage's map (NHWC at the boundary), forward_head the logits."""
    import torch

    torch.manual_seed(0)
    for fw, twin in twins.items():
        model = twin.task.build_model(tiny_spec)
        out = twin.task.predict(model, tiny_data.test.images[:3], with_features=True)
        sizes = [(16, 16, 8), (8, 8, 16)]
        assert [out[f"features.{i}"].shape[1:] for i in range(2)] == sizes, fw
        assert out["logits"].shape == (3, 10)


def test_bad_labels_rejected(twins, tiny_spec, tiny_data):
    with pytest.raises(InputError, match=r"expected values in \[0, 10\); received range \[0, 12\]"):
        check_labels(np.array([0, 12]), num_classes=10)
    for fw, twin in twins.items():
        with pytest.raises(InputError, match=r"expected 4 labels \(one per image\); received 3"):
            twin.task.train_steps(twin.task.build_model(tiny_spec), tiny_spec, tiny_data.train.images[:4],
                                  tiny_data.train.labels[:3], [np.arange(2)], tiny_spec.train)


@pytest.mark.gpu
def test_forward_parity_on_gpu(tiny_spec, tiny_data, twins):
    """The torch twin on CUDA against the TF twin: same weights, same outputs."""
    import torch

    torch.manual_seed(0)
    tm = twins["torch"].task.build_model(tiny_spec)
    km = twins["tensorflow"].task.build_model(tiny_spec)
    twins["tensorflow"].bridge.import_weights(km, twins["torch"].bridge.export_weights(tm))
    a = twins["torch"].task.predict(tm.cuda(), tiny_data.test.images[:8], device="cuda")["logits"]
    b = twins["tensorflow"].task.predict(km, tiny_data.test.images[:8], device="cuda")["logits"]
    np.testing.assert_allclose(a, b, atol=1e-4 * np.abs(a).max())
