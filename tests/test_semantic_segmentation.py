"""Semantic segmentation: what the registry-driven parity and bad-input tests do not cover.

The two alignment traps (transposed convolution and bilinear resize) against torch for shapes where Keras'
defaults differ; the loss of both twins against a float64 numpy reference and each other (1e-6), class weights
included; the metrics against scikit-learn; boundary IoU on cases with known answers; the data's class maps;
bad targets; and the tiny FCN learning the scenes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F

from pytorch_impl import layers as PL
from shared.data.semantic_segmentation import check_class_maps, class_map, horse_mask, render_horse
from shared.kernels import bilinear_kernel
from shared.metrics.semantic_segmentation import boundary_iou, confusion_matrix, segmentation_metrics
from shared.specs import SpecError, get_spec
from shared.specs.semantic_segmentation import SegmentationLossSpec, SegmenterSpec
from tensorflow_impl import layers as KL

RUN = ("semantic_segmentation", None)
LOSS_TOLERANCE = 1e-6  # relative: the bound for the loss across frameworks
ALIGN_TOLERANCE = 1e-5  # relative to the output's largest |value|: float32 sums in another order, nothing more


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


# ------------------------------------------------------------------------------------- alignment


@pytest.mark.parametrize("kernel,stride,padding,output_padding", [
    (4, 2, 1, 0),   # FCN's x2 upsampler
    (2, 2, 0, 0),   # U-Net's
    (16, 8, 4, 0),  # a x8 upsampler
    (3, 2, 1, 1),   # odd kernel: Keras' 'same' would shift the map by a pixel here
    (3, 1, 1, 0),
    (5, 3, 2, 1),
])
def test_transposed_conv_matches_torch(kernel, stride, padding, output_padding):
    rng = np.random.default_rng(kernel * 10 + stride)
    x = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    weight = rng.standard_normal((3, 4, kernel, kernel)).astype(np.float32)   # torch: (in, out, kh, kw)
    bias = rng.standard_normal(4).astype(np.float32)
    torch_layer = PL.ConvTranspose2d(3, 4, kernel, stride, padding, output_padding)
    with torch.no_grad():
        torch_layer.weight.copy_(torch.from_numpy(weight))
        torch_layer.bias.copy_(torch.from_numpy(bias))
        expected = torch_layer(_nchw(x)).numpy().transpose(0, 2, 3, 1)
    keras_layer = KL.ConvTranspose2d(3, 4, kernel, stride, padding, output_padding)
    keras_layer.build(x.shape)
    keras_layer.kernel.assign(weight.transpose(2, 3, 1, 0))
    keras_layer.bias.assign(bias)
    found = keras_layer(tf.constant(x)).numpy()
    assert found.shape == expected.shape
    assert tuple(keras_layer.compute_output_shape(x.shape)) == expected.shape
    assert np.abs(found - expected).max() <= ALIGN_TOLERANCE * np.abs(expected).max()


def test_keras_same_padding_is_the_trap_the_layer_avoids():
    """Keras' own 'same' transposed conv, kernel 3 stride 2, gives the right size but not torch's numbers."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 4, 1)).astype(np.float32)
    weight = rng.standard_normal((1, 1, 3, 3)).astype(np.float32)
    expected = F.conv_transpose2d(_nchw(x), torch.from_numpy(weight), stride=2, padding=1,
                                  output_padding=1).numpy().transpose(0, 2, 3, 1)
    same = keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same", use_bias=False)
    same.build(x.shape)
    same.kernel.assign(weight.transpose(2, 3, 1, 0))
    shifted = same(tf.constant(x)).numpy()
    assert shifted.shape == expected.shape
    assert np.abs(shifted - expected).max() > 0.1 * np.abs(expected).max()


def test_transposed_conv_refuses_output_padding_beyond_padding():
    with pytest.raises(ValueError, match="output_padding: expected at most padding"):
        KL.ConvTranspose2d(3, 4, 3, 2, 0, 1)


@pytest.mark.parametrize("size_in,size_out", [((4, 4), (32, 32)), ((8, 8), (64, 64)), ((5, 7), (13, 11)),
                                              ((32, 32), (8, 8)), ((9, 6), (4, 5)), ((1, 1), (6, 6))])
def test_bilinear_resize_matches_torch_both_ways(size_in, size_out):
    x = np.random.default_rng(sum(size_in)).standard_normal((2, *size_in, 3)).astype(np.float32)
    expected = PL.resize_bilinear(_nchw(x), size_out).numpy().transpose(0, 2, 3, 1)
    found = np.asarray(KL.resize_bilinear(tf.constant(x), size_out))
    assert found.shape == expected.shape
    assert np.abs(found - expected).max() <= ALIGN_TOLERANCE * np.abs(expected).max()


def test_align_corners_would_differ():
    """torch's align_corners=True (the other convention) is not what tf.image.resize does: the test above
    would catch a twin that used it."""
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 1)).astype(np.float32)
    corners = F.interpolate(_nchw(x), size=(16, 16), mode="bilinear", align_corners=True).numpy()
    found = np.asarray(KL.resize_bilinear(tf.constant(x), (16, 16))).transpose(0, 3, 1, 2)
    assert np.abs(corners - found).max() > 0.05


def test_bilinear_kernel_upsamples_like_interpolation():
    """FCN's initial upsampler equals bilinear interpolation away from the border (where a transposed conv
    sees zeros and interpolation repeats the edge)."""
    x = np.random.default_rng(0).standard_normal((1, 6, 6, 2)).astype(np.float32)
    up = F.conv_transpose2d(_nchw(x), torch.from_numpy(bilinear_kernel(2, 4)), stride=2, padding=1)
    interp = F.interpolate(_nchw(x), scale_factor=2, mode="bilinear", align_corners=False)
    assert np.abs((up - interp)[..., 1:-1, 1:-1].numpy()).max() < 1e-6


# ------------------------------------------------------------------------------------- loss


def _reference_loss(logits: np.ndarray, targets: np.ndarray, loss: SegmentationLossSpec) -> dict:
    """The loss in float64 numpy: (weighted) mean pixel cross-entropy + dice_weight * batch soft Dice."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    k = logits.shape[-1]
    onehot = np.eye(k)[targets]
    nll = -(onehot * logp).sum(-1)
    w = np.asarray(loss.class_weights, np.float64)[targets] if loss.class_weights else np.ones_like(nll)
    ce = (w * nll).sum() / w.sum()
    p = np.exp(logp)
    inter = (p * onehot).sum(axis=(0, 1, 2))
    total = p.sum(axis=(0, 1, 2)) + onehot.sum(axis=(0, 1, 2))
    dice = 1 - ((2 * inter + loss.dice_smooth) / (total + loss.dice_smooth)).mean()
    return {"loss_ce": ce, "loss_dice": dice, "loss": ce + loss.dice_weight * dice}


@pytest.mark.parametrize("loss", [SegmentationLossSpec(), SegmentationLossSpec(dice_weight=0.0),
                                  SegmentationLossSpec(dice_weight=2.0, dice_smooth=0.0),
                                  SegmentationLossSpec(class_weights=(0.2, 1, 2, 3, 1, 1, 5))])
@pytest.mark.parametrize("scale", [1.0, 20.0])
def test_loss_matches_the_reference_in_both_twins(twins, loss, scale):
    spec = dataclasses.replace(get_spec(*RUN[:1], "tiny"), loss=loss)
    rng = np.random.default_rng(int(scale))
    logits = (rng.standard_normal((3, 8, 8, 7)) * scale).astype(np.float32)
    targets = rng.integers(0, 7, (3, 8, 8))
    expected = _reference_loss(logits, targets, loss)
    found = {"torch": twins["torch"].task.compute_loss({"logits": _nchw(logits)}, torch.from_numpy(targets), spec),
             "tensorflow": twins["tensorflow"].task.compute_loss({"logits": tf.constant(logits)},
                                                                 tf.constant(targets), spec)}
    for fw, terms in found.items():
        assert set(terms) == set(expected)
        for key, want in expected.items():
            assert abs(float(terms[key]) - want) <= LOSS_TOLERANCE * max(abs(want), 1e-3), (fw, key, terms[key], want)


def test_class_weights_must_cover_every_class():
    with pytest.raises(SpecError, match=r"class_weights: expected one weight per class \(7\)"):
        dataclasses.replace(get_spec(*RUN[:1], "tiny"), loss=SegmentationLossSpec(class_weights=(1.0, 2.0)))


def test_spec_refuses_what_the_decoders_cannot_build():
    with pytest.raises(SpecError, match="model.arch: expected one of"):
        SegmenterSpec(arch="pspnet")
    with pytest.raises(SpecError, match="model.skips: the DeepLab-style decoder"):
        SegmenterSpec(arch="deeplab", skips=2)
    with pytest.raises(SpecError, match="model.skips: expected an integer in"):
        SegmenterSpec(skips=9)
    with pytest.raises(SpecError, match="unknown variant 'segformer'"):
        get_spec("semantic_segmentation", "tiny", "segformer")


# ------------------------------------------------------------------------------------- metrics


def test_confusion_and_iou_match_scikit_learn():
    from sklearn.metrics import confusion_matrix as sk_confusion
    from sklearn.metrics import jaccard_score

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, (4, 16, 16))
    predicted = np.where(rng.random(truth.shape) < 0.7, truth, rng.integers(0, 5, truth.shape))
    predicted[predicted == 4] = 3  # class 4 never predicted: IoU 0, still counted
    matrix = confusion_matrix(predicted, truth, 5)
    assert (matrix == sk_confusion(truth.ravel(), predicted.ravel(), labels=range(5))).all()
    logits = np.eye(5, dtype=np.float32)[predicted]
    metrics = segmentation_metrics(logits, truth, 5)
    expected = jaccard_score(truth.ravel(), predicted.ravel(), labels=list(range(5)), average=None)
    assert np.allclose(metrics["per_class_iou"], expected)
    assert metrics["miou"] == pytest.approx(expected.mean())
    assert metrics["pixel_accuracy"] == pytest.approx((truth == predicted).mean())


def test_a_class_absent_everywhere_is_left_out_of_the_mean():
    truth = np.zeros((1, 4, 4), np.int64)
    truth[0, :2] = 1
    metrics = segmentation_metrics(np.eye(3, dtype=np.float32)[truth], truth, 3)
    assert metrics["per_class_iou"] == [1.0, 1.0, None]
    assert metrics["miou"] == 1.0


def test_boundary_iou_on_known_cases():
    truth = np.zeros((1, 20, 20), np.int64)
    truth[0, 5:15, 5:15] = 1
    perfect, per_class = boundary_iou(truth, truth, 2, width=2)
    assert perfect == 1.0 and per_class == [1.0, 1.0]
    shifted = np.roll(truth, 1, axis=2)
    # Class 1's band: the 10x10 square minus its 6x6 core, 64 pixels; shifted a pixel right, the two bands share
    # the rows and columns that stay inside both: 44 of the 84 pixels in either.
    _, per_class = boundary_iou(shifted, truth, 2, width=2)
    band = truth[0].astype(bool) & ~np.pad(np.ones((6, 6), bool), 7)
    moved = np.roll(band, 1, axis=1)
    assert per_class[1] == pytest.approx((band & moved).sum() / (band | moved).sum())
    # Region IoU forgives a one-pixel shift far more than boundary IoU does.
    region = segmentation_metrics(np.eye(2, dtype=np.float32)[shifted], truth, 2)["per_class_iou"][1]
    assert region > per_class[1] + 0.2


def test_metrics_refuse_mismatched_inputs():
    truth = np.zeros((2, 4, 4), np.int64)
    with pytest.raises(ValueError, match=r"logits: expected shape \[N, H, W, 3\]"):
        segmentation_metrics(np.zeros((2, 4, 4, 2), np.float32), truth, 3)
    with pytest.raises(ValueError, match=r"truth: expected class ids in \[0, 2\]"):
        confusion_matrix(truth, truth + 5, 3)


# ------------------------------------------------------------------------------------- data


def test_class_map_paints_the_visible_object_of_each_pixel(data):
    split = data.train
    assert split.masks.dtype == np.int64 and split.masks.shape == split.images.shape[:3]
    assert set(np.unique(split.masks)) <= set(range(7)) and (split.masks > 0).any()
    labels, visible = np.array([2, 0]), np.zeros((2, 4, 4), bool)
    visible[0, :2], visible[1, 2:, 2:] = True, True
    assert (class_map(labels, visible, (4, 4)) == [[3] * 4, [3] * 4, [0, 0, 1, 1], [0, 0, 1, 1]]).all()
    with pytest.raises(ValueError, match="expected disjoint masks"):
        class_map(labels, np.ones((2, 4, 4), bool), (4, 4))


def test_horses_are_the_real_silhouette():
    mask = horse_mask()
    assert mask.dtype == bool and 0.3 < mask.mean() < 0.8
    image, classes = render_horse(np.random.default_rng(0), 64)
    assert image.shape == (64, 64, 3) and image.dtype == np.float32
    assert set(np.unique(classes)) == {0, 1} and 0.05 < classes.mean() < 0.7
    spec = get_spec("semantic_segmentation", "tiny")
    horses = dataclasses.replace(spec, data=dataclasses.replace(spec.data, dataset="horses"))
    with pytest.raises(ValueError, match="the 'horses' data set has 2 classes; received: 7"):
        horses.check_data_matches()


@pytest.mark.parametrize("bad,match", [
    (lambda m: m[:-1], r"expected shape \[4, 32, 32\]"),
    (lambda m: m.astype(np.float32), "expected integer class ids"),
    (lambda m: m + 7, r"expected class ids in \[0, 6\]"),
    (lambda m: m - 1, r"expected class ids in \[0, 6\]"),
])
def test_bad_class_maps_are_refused_by_both_trainers(twins, data, bad, match):
    spec = get_spec("semantic_segmentation", "tiny")
    images, masks = data.train.images[:4], data.train.masks[:4]
    with pytest.raises(ValueError, match=match):
        check_class_maps(bad(masks), 7, 4, (32, 32))
    for fw, twin in twins.items():
        model = twin.task.build_model(spec)
        with pytest.raises(ValueError, match=match):
            twin.task.train_steps(model, spec, images, bad(masks), [np.arange(4)], spec.train)


# ------------------------------------------------------------------------------------- training


def test_tiny_fcn_learns_the_scenes_in_both_frameworks(twins, data):
    """From the same initialisation and batches, each twin beats the all-background answer on held-out scenes
    and the two agree on most pixels."""
    spec = get_spec("semantic_segmentation", "tiny")
    from compare.parity import same_init

    models, _ = same_init(twins, spec, "torch", 0)
    metrics, logits = {}, {}
    for fw, twin in twins.items():
        model, history = twin.task.train(spec, data, model=models[fw], progress=False)
        assert history[-1]["loss"] < history[0]["loss"]
        logits[fw] = twin.task.predict(model, data.test.images)["logits"]
        metrics[fw] = segmentation_metrics(logits[fw], data.test.masks, 7)
    background = (data.test.masks == 0).mean()
    trivial = segmentation_metrics(np.eye(7, dtype=np.float32)[np.zeros_like(data.test.masks)], data.test.masks, 7)
    for fw, m in metrics.items():  # measured: mIoU 0.25 against the all-background answer's 0.12
        assert m["pixel_accuracy"] > background + 0.01, (fw, m["pixel_accuracy"], background)
        assert m["miou"] > trivial["miou"] + 0.06, (fw, m["miou"], trivial["miou"])
    agree = (logits["torch"].argmax(-1) == logits["tensorflow"].argmax(-1)).mean()
    assert agree > 0.9, agree


# ------------------------------------------------------------------------------------- studies


def test_each_study_runs_on_the_tiny_preset(twins, tmp_path, smoke_timing):
    """Every study at the quick profile's plan on the three tiny models, trained 1 epoch each and stored where
    their runs' caches are: tables, plots and verdicts (not the accuracies) are under test."""
    from compare.parity import same_init
    from compare.pipeline import run_cache
    from compare.studies import StudyContext
    from compare.tasks.semantic_segmentation import MODELS, PLUGIN
    from shared import data as D
    from shared.specs import run_name

    def initial_model(fw, s):  # the report's Initialisation: the seed's torch draw, in both frameworks
        return same_init(twins, s, "torch", s.train.seed)[0][fw]

    results = {}
    for variant in MODELS:
        spec = get_spec("semantic_segmentation", "tiny", variant)
        spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=1))
        data = D.load(spec)
        cache = run_cache(tmp_path, run_name("semantic_segmentation", variant), "tiny")
        trained = {}
        for fw, twin in twins.items():
            trained[fw] = twin.task.train(spec, data, model=initial_model(fw, spec), progress=False)[0]
            twin.bridge.save_weights(trained[fw], cache.path(f"trained-{fw}.safetensors"), {})
        ctx = StudyContext(spec, data, twins, trained, cache, lambda line: None, initial_model, "quick", "tiny")
        for study in PLUGIN.studies:
            if study.runs_on(variant):
                results[variant, study.name] = study.run(ctx)
    verdicts = ("supported", "refuted", "mixed")
    skips = results[None, "skips"]
    assert [r["skips"] for r in skips["rows"]] == [0, 2, 0, 2] and skips["verdicts"][0]["verdict"] in verdicts
    assert skips["rows"][0]["parameters"] != skips["rows"][1]["parameters"]  # one x4 upsampler against two skips
    atrous = results["deeplab", "atrous"]
    assert len(atrous["rows"]) == 4 and atrous["rows"][0]["parameters"] == atrous["rows"][1]["parameters"]
    assert atrous["verdicts"][0]["verdict"] in verdicts
    decoders = results["deeplab", "decoders"]
    assert {(r["framework"], r["model"]) for r in decoders["rows"]} == {(fw, m) for fw in twins for m in MODELS.values()}
    assert all(r["p50_ms_b1"] > 0 and r["p50_ms_b32"] > 0 and 0 <= r["miou"] <= 1 for r in decoders["rows"])
    assert decoders["plot"]["kind"] == "points" and all(None not in s for s in decoders["plot"]["series"].values())
    assert [v["verdict"] in verdicts for v in decoders["verdicts"]] == [True, True]
    horses = results[None, "horses"]
    assert len(horses["rows"]) == 2 and all(0 <= r["horse_iou"] <= 1 for r in horses["rows"])
    for variant in MODELS:
        assert Path(results[variant, "masks"]["images"]["masks"]).stat().st_size > 1000


def test_padding_share_of_dilated_taps():
    from compare.tasks.semantic_segmentation import _padding_share

    assert _padding_share(8, 8) == 1.0  # every outer tap is off the map
    # Rate 1 on a 3x3 map: the centre sees all 8 outer taps, an edge cell 5, a corner 3: (8 + 4 * 5 + 4 * 3) / 72.
    assert _padding_share(3, 1) == pytest.approx(1 - 40 / 72)
    shares = [_padding_share(8, r) for r in (1, 2, 4, 6)]
    assert shares == sorted(shares)
