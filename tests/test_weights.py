"""The canonical weight layout: transpose rules, layout checks and safetensors files."""

from __future__ import annotations

import numpy as np
import pytest

from shared import weights as W


@pytest.mark.parametrize("kind,shape,keras_shape", [
    ("conv", (8, 3, 5, 7), (5, 7, 3, 8)),
    ("depthwise", (6, 1, 3, 3), (3, 3, 6, 1)),
    ("conv_transpose", (4, 2, 3, 5), (3, 5, 2, 4)),
    ("dense", (10, 32), (32, 10)),
    ("vector", (16,), (16,)),
])
def test_round_trip_per_rule(kind, shape, keras_shape):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    k = W.to_keras(kind, x)
    assert k.shape == keras_shape
    np.testing.assert_array_equal(W.from_keras(kind, k), x)


def test_conv_rule_matches_keras_conv():
    """The conv rule is not just self-consistent: a torch conv and a Keras conv agree through it."""
    import keras
    import torch

    x = np.random.default_rng(1).normal(size=(1, 6, 7, 3)).astype(np.float32)
    conv = torch.nn.Conv2d(3, 4, 3, bias=False)
    ref = conv(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy().transpose(0, 2, 3, 1)
    layer = keras.layers.Conv2D(4, 3, use_bias=False)
    layer.build((None, 6, 7, 3))
    layer.kernel.assign(W.to_keras("conv", conv.weight.detach().numpy()))
    np.testing.assert_allclose(layer(x).numpy(), ref, atol=1e-5)


def test_unknown_kind_and_wrong_rank():
    with pytest.raises(W.WeightError, match="unknown tensor kind 'lstm'"):
        W.to_keras("lstm", np.zeros((2, 2)))
    with pytest.raises(W.WeightError, match=r"conv tensor has rank 4; received shape \(3, 3\)"):
        W.to_keras("conv", np.zeros((3, 3)))


def test_check_layout_names_every_problem():
    expected = {"a.weight": (4, 3), "a.bias": (4,), "b.weight": (2, 2)}
    got = {"a.weight": np.zeros((3, 4)), "a.bias": np.zeros(4), "c.weight": np.zeros(1)}
    with pytest.raises(W.WeightError) as err:
        W.check_layout(expected, got, source="weight file 'x'")
    msg = str(err.value)
    assert "missing keys ['b.weight']" in msg
    assert "unexpected keys ['c.weight']" in msg
    assert "'a.weight': model expects shape (4, 3), weight file 'x' has (3, 4)" in msg


def test_file_round_trip_and_metadata(tmp_path):
    tensors = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)}
    path = W.save_file(tensors, tmp_path / "m.safetensors", {"task": "x"})
    loaded = W.load_file(path)
    assert set(loaded) == {"w", "b"}
    np.testing.assert_array_equal(loaded["w"], tensors["w"])
    assert not list(tmp_path.glob(".*.tmp")), "atomic write left a temp file"


def test_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(W.WeightError, match="does not exist"):
        W.load_file(tmp_path / "nope.safetensors")
    good = W.save_file({"w": np.ones((64, 64), np.float32)}, tmp_path / "good.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(W.WeightError, match="corrupt"):
        W.load_file(truncated)
    foreign = tmp_path / "pickle.pt"
    foreign.write_bytes(b"\x80\x04\x95 not a safetensors file at all")
    with pytest.raises(W.WeightError, match="corrupt|not a safetensors"):
        W.load_file(foreign)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"abc")
    with pytest.raises(W.WeightError, match="only 3 bytes"):
        W.load_file(tiny)


def test_file_crosses_frameworks(tmp_path, tiny_spec, tiny_data):
    """torch saves, Keras loads from the file; the models then agree."""
    import torch

    from pytorch_impl import bridge as PB
    from pytorch_impl.classification import build_model as torch_build, predict as torch_predict
    from tensorflow_impl import bridge as TB
    from tensorflow_impl.classification import build_model as tf_build, predict as tf_predict

    torch.manual_seed(0)
    tm = torch_build(tiny_spec)
    path = PB.save_weights(tm, tmp_path / "tiny.safetensors")
    km = TB.load_weights(tf_build(tiny_spec), path)
    x = tiny_data.test.images[:4]
    a, b = torch_predict(tm, x)["logits"], tf_predict(km, x)["logits"]
    np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(a).max())
    # And back: Keras saves, torch loads.
    path2 = TB.save_weights(km, tmp_path / "back.safetensors")
    tm2 = PB.load_weights(torch_build(tiny_spec), path2)
    np.testing.assert_allclose(torch_predict(tm2, x)["logits"], a, atol=1e-6 * np.abs(a).max())


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_mismatched_weight_file_names_key_and_shapes(tmp_path, tiny_spec, framework):
    import dataclasses

    from compare.frameworks import load_twin

    twin = load_twin(framework, "classification")
    wider = dataclasses.replace(tiny_spec, model=dataclasses.replace(tiny_spec.model, widths=(8, 32)))
    path = twin.bridge.save_weights(twin.task.build_model(wider), tmp_path / "wider.safetensors")
    with pytest.raises(W.WeightError) as err:
        twin.bridge.load_weights(twin.task.build_model(tiny_spec), path)
    msg = str(err.value)
    assert "wider.safetensors" in msg
    assert "'layer2.0.conv1.weight': model expects shape (16, 8, 3, 3)" in msg and "has (32, 8, 3, 3)" in msg
