"""Data augmentation: what the registry-driven parity and bad-input tests do not cover.

The ops of both libraries with fixed parameters (equal within the spec's tolerance where they compute the same
function, the known differences where they do not), references for the ops numpy can state exactly, the random
pipelines, the shifted test data, and a tiny run of each study.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from shared.data.augmentation import SHIFTS, colour_images, parity_params, shifted
from shared.specs import SpecError, get_spec
from shared.specs.augmentation import DIFFERENT_OPS, OPS, PARITY_OPS, SAME_OP_TOLERANCE, AugmentSpec

RUN = ("augmentation", None)
SIZE = 32


@pytest.fixture(scope="module")
def images():
    return colour_images(SIZE, 6)


@pytest.fixture(scope="module")
def params():
    return parity_params(SIZE, AugmentSpec().crop_size(SIZE))


@pytest.mark.parametrize("op", [op for op in PARITY_OPS if op not in DIFFERENT_OPS])
def test_the_same_op_with_the_same_parameters_agrees(twins, images, params, op):
    out = {fw: twins[fw].task.apply_op(op, images, params[op]) for fw in twins}
    assert out["torch"].shape == out["tensorflow"].shape == images.shape
    assert np.abs(out["torch"] - images).max() > 0.1, f"{op} left the images as they were"
    assert np.abs(out["torch"] - out["tensorflow"]).max() <= SAME_OP_TOLERANCE


@pytest.mark.parametrize("op", sorted(DIFFERENT_OPS))
def test_ops_that_differ_by_design_differ_as_documented(twins, images, params, op):
    """The colour ops are other functions in Keras (the op-parity study reports by how much); the noise is the
    same sum, clipped to [0, 1] by torchvision only."""
    torch_out, keras_out = (twins[fw].task.apply_op(op, images, params[op]) for fw in ("torch", "tensorflow"))
    assert np.abs(torch_out - keras_out).max() > SAME_OP_TOLERANCE
    assert 0.0 <= torch_out.min() and torch_out.max() <= 1.0
    if op == "noise":
        assert keras_out.min() < 0.0 or keras_out.max() > 1.0
        assert np.abs(torch_out - np.clip(keras_out, 0.0, 1.0)).max() <= 1e-6
    if op == "contrast":  # Keras: around each channel's own mean, per image (its documented formula)
        mean = images.mean(axis=(1, 2), keepdims=True)
        expected = np.clip((images - mean) * params[op]["factor"] + mean, 0.0, 1.0)
        assert np.abs(keras_out - expected).max() <= 1e-5


def test_ops_against_numpy_references(twins, images):
    """Where numpy states the op exactly: a mirror, a whole-pixel shift with zero fill, a zeroed box."""
    shift = {"dx": 2.0, "dy": -3.0}
    expected_shift = np.zeros_like(images)
    expected_shift[:, :-3, 2:] = images[:, 3:, :-2]
    box = {"top": 4, "left": 6, "height": 8, "width": 5, "value": 0.0}
    expected_box = images.copy()
    expected_box[:, 4:12, 6:11] = 0.0
    for fw, twin in twins.items():
        np.testing.assert_array_equal(twin.task.apply_op("flip", images, {}), images[:, :, ::-1])
        assert np.abs(twin.task.apply_op("translation", images, shift) - expected_shift).max() <= 1e-6, fw
        np.testing.assert_array_equal(twin.task.apply_op("erasing", images, box), expected_box)


def test_random_pipelines_draw_per_image_and_repeat_with_the_seed(twins, images):
    import torch

    from pytorch_impl.tensors import to_native, to_numpy

    spec = AugmentSpec(ops=("rotation", "translation", "color"))
    batch = np.repeat(images[:1], 4, axis=0)  # one image four times: per-image draws make four pictures
    torch_run = twins["torch"].task.augment_batch(twins["torch"].task.build_pipeline(spec, SIZE))
    keras_run = lambda seed: twins["tensorflow"].task.augment_batch(  # noqa: E731
        twins["tensorflow"].task.build_pipeline(spec, SIZE, seed=seed))
    outputs = {}
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        outputs.setdefault("torch", []).append(to_numpy(torch_run(to_native(batch))))
        outputs.setdefault("tensorflow", []).append(np.asarray(keras_run(seed)(batch)))
    for fw, (first, again, other) in outputs.items():
        assert first.shape == batch.shape and first.dtype == np.float32, fw
        np.testing.assert_allclose(first, again, atol=1e-6, err_msg=fw)
        assert np.abs(first - other).max() > 0.05, fw
        assert min(np.abs(first[0] - first[i]).max() for i in (1, 2, 3)) > 0.01, f"{fw}: one draw for the batch"
    assert twins["torch"].task.build_pipeline(AugmentSpec(ops=()), SIZE) is None


def test_shifted_test_data():
    split = get_spec("augmentation", "tiny")
    from shared.data import load

    test = load(split).test
    darker, noisier, rotated = (shifted(test, kind) for kind in ("darker", "noisier", "rotated"))
    np.testing.assert_allclose(darker.images, test.images * 0.5)
    assert 0.0 <= noisier.images.min() and noisier.images.max() <= 1.0 and 0.05 < np.std(noisier.images - test.images)
    assert rotated.images.shape == test.images.shape and np.abs(rotated.images - test.images).mean() > 0.02
    assert np.array_equal(rotated.labels, test.labels) and set(SHIFTS) == {"rotated", "darker", "noisier"}
    with pytest.raises(ValueError, match="unknown shift 'upside-down'"):
        shifted(test, "upside-down")


def test_bad_augment_specs_are_refused():
    with pytest.raises(SpecError, match=r"augment.ops: expected one of \['flip'"):
        AugmentSpec(ops=("flip", "mixup"))
    with pytest.raises(ValueError, match="in that order"):
        AugmentSpec(ops=("rotation", "flip"))
    with pytest.raises(SpecError, match="augment.rotation"):
        AugmentSpec(rotation=-5.0)
    assert AugmentSpec().ops == OPS and AugmentSpec().crop_size(32) == 26


def test_each_study_runs_on_the_tiny_preset(twins, data, tmp_path):
    from compare.cache import TaskCache
    from compare.parity import same_init
    from compare.studies import StudyContext
    from compare.tasks.augmentation import PLANS, PLUGIN

    # 2 epochs a training: the tables, plot, gallery and verdicts (not the accuracies) are under test.
    spec = get_spec("augmentation", "tiny")
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=2))
    ctx = StudyContext(spec, data, twins, {}, TaskCache(tmp_path, "augmentation", "tiny", spec), lambda line: None,
                       lambda fw, s: same_init(twins, s, "torch", s.train.seed)[0][fw], "quick", "tiny")
    results = {study.name: study.run(ctx) for study in PLUGIN.studies}
    parity = results["op-parity"]
    assert [r["op"] for r in parity["rows"]] == list(PARITY_OPS)
    assert parity["parity"] and all(e["ok"] for e in parity["parity"]), parity["parity"]
    ablation = results["ablation"]
    assert len(ablation["rows"]) == 2 * len(PLANS["quick"].configs) and len(ablation["verdicts"]) == 3
    assert all(0.0 <= r[f"{k}_accuracy"] <= 1.0 for r in ablation["rows"] for k in SHIFTS)
    gallery = results["gallery"]["images"]["gallery"]
    assert open(gallery, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    throughput = results["throughput"]
    assert {r["framework"] for r in throughput["rows"]} == set(twins)
    assert all(r["augment_images_per_s"] > 0 and r["augment_share_of_step"] > 0 for r in throughput["rows"])
