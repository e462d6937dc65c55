"""The instance-segmentation twins beyond what the registry's parity and bad-input tables run for every model
(L1-L5 of the tiny Mask R-CNN-style model are there): mask pasting against torch's grid_sample, the mask crop and
the paste as inverses, the mask loss's choice of RoIs, bad targets, the pretrained-detector chain and the
studies. The data and the pycocotools segm agreement are in tests/test_instance_segmentation_data.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import torch

from pytorch_impl.instance_segmentation import loss as PLoss
from pytorch_impl.instance_segmentation.postprocess import paste_masks as torch_paste
from pytorch_impl.ops import roi_align
from shared.specs import get_spec
from tensorflow_impl.instance_segmentation import loss as TLoss
from tensorflow_impl.instance_segmentation.postprocess import paste_masks as tf_paste

RUN = ("instance_segmentation", None)
SPEC = get_spec(*RUN[:1], "tiny")


# ------------------------------------------------------------------------------------- pasting


def test_tensorflow_paste_matches_torch_grid_sample():
    """The TensorFlow twin's written-out bilinear sampling against torch's F.grid_sample (zero padding,
    align_corners False), on boxes inside, across and beyond the image's edges, thin and fractional."""
    rng = np.random.default_rng(0)
    probabilities = rng.uniform(0, 1, (7, 14, 14)).astype(np.float32)
    boxes = np.array([[10.3, 4.7, 40.2, 30.9], [0, 0, 64, 64], [-8.5, 50.0, 20.0, 80.0], [30, 30, 31.5, 60],
                      [60.0, -3.0, 90.0, 5.0], [2.25, 2.75, 9.5, 6.0], [20, 20, 44, 44]], np.float32)
    a = torch_paste(torch.from_numpy(probabilities), torch.from_numpy(boxes), (64, 64)).numpy()
    b = tf_paste(tf.constant(probabilities), tf.constant(boxes), (64, 64)).numpy()
    assert a.shape == b.shape == (7, 64, 64)
    assert np.abs(a - b).max() < 1e-6
    # A mask fades out over one cell (24 / 14 px here) beyond its box, as torchvision's zero-padded paste does;
    # pixels farther out are 0.
    outside = np.ones((64, 64), bool)
    outside[18:46, 18:46] = False
    assert a[6][outside].max() == 0.0 and a[6][20:44, 20:44].min() > 0.0


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_crop_then_paste_gives_the_mask_back(data, framework):
    """The loss's targets (each visible mask cropped to its box by aligned RoIAlign at S x S) pasted back by the
    post-processing reproduce the masks: the two conventions are inverses up to the S x S resolution."""
    split = data.test.head(16)
    s = SPEC.mask.mask_size
    ious = []
    for boxes, masks in zip(split.boxes, split.visible_masks):
        m = torch.from_numpy(masks.astype(np.float32))[:, None]
        crop = roi_align(m, torch.from_numpy(boxes), torch.arange(len(boxes)), s, 1.0, SPEC.mask.sampling_ratio,
                         True)[:, 0]
        if framework == "torch":
            pasted = torch_paste(crop, torch.from_numpy(boxes), masks.shape[1:]).numpy()
        else:
            pasted = tf_paste(tf.constant(crop.numpy()), tf.constant(boxes), masks.shape[1:]).numpy()
        pasted = pasted > SPEC.mask.threshold
        ious += [(p & t).sum() / (p | t).sum() for p, t in zip(pasted, masks)]
    assert np.mean(ious) > 0.97 and np.min(ious) > 0.8, (np.mean(ious), np.min(ious))  # measured 0.991, 0.918


# ------------------------------------------------------------------------------------- the mask loss


def _rois(twin_tensor):
    """Two images, 5 candidates each; image 0 has positives 1, 3, 4 (priorities 4, 0, 2), image 1 none."""
    candidates = np.array([[[0, 0, 8, 8], [4, 4, 20, 20], [1, 1, 2, 2], [10, 10, 30, 30], [0, 0, 64, 64]],
                           [[0, 0, 8, 8]] * 5], np.float32)
    positive = np.array([[False, True, False, True, True], [False] * 5])
    rows = np.array([[0, 0, 0, 1, 0], [0] * 5], np.int64)
    labels = np.array([[0, 2, 0, 5, 1], [0] * 5], np.int64)
    priority = np.array([1, 4, 3, 0, 2], np.float32)
    return twin_tensor(candidates, positive, rows, labels, priority)


def _ids():
    ids = np.zeros((2, 64, 64), np.int64)
    ids[0, 5:15, 5:15] = 1
    ids[0, 12:28, 12:28] = 2
    return ids


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_mask_loss_takes_the_first_positives_by_priority(framework):
    """With two RoIs per image, image 0's mask loss runs on its positives of lowest priority (slots 3 then 4); at
    zero logits every pixel's BCE is log 2 whatever its target, and the mean over the valid RoIs is log 2."""
    spec = dataclasses.replace(SPEC, mask=dataclasses.replace(SPEC.mask, rois_per_image=2))
    seen = {}
    s, k = spec.mask.mask_size, spec.model.num_classes
    if framework == "torch":
        from pytorch_impl.detection.faster_rcnn import RoISample
        rois = _rois(lambda c, p, r, y, q: RoISample(*(torch.from_numpy(v) for v in (c, p, r, y, q))))

        def head(boxes):
            seen["boxes"] = boxes.numpy()
            return torch.zeros(boxes.shape[0], boxes.shape[1], s, s, k, requires_grad=True)

        loss = PLoss.mask_loss(head, rois, torch.from_numpy(_ids()), spec).item()
    else:
        from tensorflow_impl.detection.faster_rcnn import RoISample
        rois = _rois(lambda c, p, r, y, q: RoISample(*(tf.constant(v) for v in (c, p, r, y, q))))

        def head(boxes):
            seen["boxes"] = boxes.numpy()
            return tf.zeros([boxes.shape[0], boxes.shape[1], s, s, k])

        loss = float(TLoss.mask_loss(head, rois, tf.constant(_ids()), spec))
    np.testing.assert_allclose(seen["boxes"][0], [[10, 10, 30, 30], [0, 0, 64, 64]])
    assert loss == pytest.approx(np.log(2.0), rel=1e-6)


# ------------------------------------------------------------------------------------- bad targets


def _overlapping(targets):
    t = [dict(x) for x in targets]
    masks = t[0]["masks"].copy()
    masks[:] = True
    t[0]["masks"] = masks
    return t


@pytest.mark.parametrize("bad, match", [
    (lambda t: [{"boxes": x["boxes"], "labels": x["labels"]} for x in t], "expected a dict with 'boxes', 'labels' "
                                                                          "and 'masks'"),
    (lambda t: [{**x, "masks": x["masks"][:-1]} if i == 0 else x for i, x in enumerate(t)], "one mask per label"),
    (_overlapping, "expected disjoint masks"),
    (lambda t: np.zeros((len(t), 17), np.float32), r"expected shape \[N, 4126\]"),
])
def test_bad_targets_are_refused_by_both_trainers(twins, data, bad, match):
    images, targets = data.train.images[:4], data.train.targets[:4]
    if len(targets[0]["labels"]) < 2 and "one mask" in match:
        targets = [t for t in data.train.targets if len(t["labels"]) >= 2][:1] * 4
    for fw, twin in twins.items():
        model = twin.task.build_model(SPEC)
        with pytest.raises(ValueError, match=match):
            twin.task.train_steps(model, SPEC, images, bad(targets), [np.arange(4)], SPEC.train)


def test_compute_loss_refuses_eval_outputs_and_bad_ids(twins, data):
    for fw, twin in twins.items():
        with pytest.raises(ValueError, match="training-mode outputs with 'mask_head'"):
            twin.task.compute_loss({"cls_logits": None}, np.zeros((1, SPEC.target_width), np.float32), SPEC)
    bad = np.zeros((1, SPEC.target_width), np.float32)
    bad[0, -1] = 9.0   # an instance id beyond max_objects (6)
    with pytest.raises(ValueError, match=r"expected instance ids in \[0, 6\]"):
        PLoss.split_targets(torch.from_numpy(bad), SPEC)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"expected instance ids in \[0, 6\]"):
        TLoss.split_targets(bad, SPEC)


def test_postprocess_refuses_outputs_without_masks(twins):
    outputs = {"proposals": np.zeros((1, 32, 4), np.float32), "cls_logits": np.zeros((1, 32, 7), np.float32),
               "box_regression": np.zeros((1, 32, 28), np.float32)}
    for fw, twin in twins.items():
        with pytest.raises(ValueError, match="expected 'mask_logits'"):
            twin.task.postprocess(outputs, SPEC)
        with pytest.raises(ValueError, match=r"expected shape \[1, 32, 14, 14, 6\]"):
            twin.task.postprocess({**outputs, "mask_logits": np.zeros((1, 32, 28, 28, 6), np.float32)}, SPEC)


def test_spec_refuses_a_single_shot_detector():
    from shared.specs import SpecError

    with pytest.raises(SpecError, match="expected 'faster_rcnn'"):
        dataclasses.replace(SPEC, model=dataclasses.replace(SPEC.model, detector="ssd"))
    with pytest.raises(SpecError, match="mask.layers"):
        dataclasses.replace(SPEC.mask, layers=())


# ------------------------------------------------------------------------------------- the detector it starts from


def test_the_detector_chain_is_trained_into_its_caches(tmp_path, data, monkeypatch):
    """``prepare_data`` with ``body_from`` the two-stage detector: the SSD, then the two-stage detector from the
    SSD's body, are trained into their own caches (one short epoch each here); the run's initialisation then
    holds the trained detector's body, RPN and box head, and its own seeded mask head."""
    from compare.pipeline import run_cache
    from compare.stages.train import Initialisation
    from compare.tasks import instance_segmentation as plugin
    from compare.frameworks import load_twins
    from shared import weights as W

    def short(task, preset, variant=None):  # one epoch; the two-stage detector from the SSD, as in the standard
        s = get_spec(task, preset, variant)
        return dataclasses.replace(s, train=dataclasses.replace(s.train, epochs=1, batch_size=64),
                                   body_from="detection" if variant == "faster_rcnn" else s.body_from)

    monkeypatch.setattr(plugin, "get_spec", short)
    spec = dataclasses.replace(SPEC, body_from="detection.faster_rcnn")
    small = dataclasses.replace(data, train=data.train.head(64))
    lines = []

    def cache_of(run):
        task, _, variant = run.partition(".")
        return run_cache(tmp_path, run, "tiny", short(task, "tiny", variant or None))

    plugin.ensure_detector(spec, small, "tiny", cache_of, lines.append)
    assert [line.split()[1] for line in lines] == ["detection", "detection.faster_rcnn"]
    plugin.ensure_detector(spec, small, "tiny", cache_of, lines.append)
    assert "cached" in lines[-1] and "cached" in lines[-2]
    trained = W.load_file(cache_of("detection.faster_rcnn").path("trained-torch.safetensors"))
    initial = Initialisation(load_twins("instance_segmentation"), cache_of).model("torch", spec)
    state = {k: v.numpy() for k, v in initial.state_dict().items()}
    for key in ("backbone.conv1.weight", "rpn.conv.0.weight", "roi_head.fc6.weight"):
        np.testing.assert_array_equal(state[key], trained[key])
    assert not any(k.startswith("mask_head.") for k in trained)


# ------------------------------------------------------------------------------------- studies


def test_each_study_runs_on_the_tiny_preset(twins, data, tmp_path, smoke_timing):
    """Every study at the quick profile's plan on the tiny model, trained 2 epochs in each framework: tables,
    plots, verdicts and the picture (not the accuracies) are under test."""
    from compare.parity import same_init
    from compare.pipeline import run_cache
    from compare.studies import StudyContext
    from compare.tasks.instance_segmentation import PLUGIN, PLANS

    spec = dataclasses.replace(SPEC, train=dataclasses.replace(SPEC.train, epochs=2))
    models, _ = same_init(twins, spec, "torch", 0)
    trained = {fw: twin.task.train(spec, data, model=models[fw], progress=False)[0] for fw, twin in twins.items()}
    cache = run_cache(tmp_path, "instance_segmentation", "tiny")
    ctx = StudyContext(spec, data, twins, trained, cache, lambda line: None, None, "quick", "tiny")
    results = {study.name: study.run(ctx) for study in PLUGIN.studies if study.runs_on(None)}
    verdicts = ("supported", "refuted", "mixed")
    crowding = results["crowding"]
    assert [(r["framework"], r["counted_from"][:7]) for r in crowding["rows"]] == [
        ("truth", "regions"), ("torch", "instanc"), ("torch", "regions"), ("tensorflow", "instanc"),
        ("tensorflow", "regions")]
    assert crowding["rows"][0]["count_accuracy"] < 0.5  # a perfect class map miscounts most crowded scenes
    assert all(0 <= r["count_accuracy"] <= 1 and 0 <= r["miou"] <= 1 for r in crowding["rows"])
    assert crowding["verdicts"][0]["verdict"] in verdicts
    assert f"{PLANS['quick'].crowded_images} held-out scenes" in crowding["text"]
    masks = results["mask_vs_box"]
    assert [(r["framework"], r["masks"]) for r in masks["rows"]] == [
        (fw, what) for fw in ("torch", "tensorflow") for what in ("predicted masks", "boxes filled in")]
    assert [v["verdict"] in verdicts for v in masks["verdicts"]] == [True, True]
    assert Path(results["masks"]["images"]["instances"]).stat().st_size > 1000


def test_filled_boxes_cover_the_pixels_whose_centre_is_inside():
    from compare.tasks.instance_segmentation import _boxes_as_masks

    found = _boxes_as_masks([{"boxes": np.array([[1.0, 2.0, 3.5, 4.4]]), "scores": np.ones(1),
                              "labels": np.zeros(1, np.int64)}], (6, 6))
    expected = np.zeros((6, 6), bool)
    expected[2:4, 1:3] = True   # centres 2.5, 3.5 (rows) and 1.5, 2.5 (columns) lie inside; 3.5 < 3.5 does not
    np.testing.assert_array_equal(found[0]["masks"][0], expected)


def test_the_framework_finishes_an_exported_view_with_masks(twins, data):
    """The report's ONNX and TFLite backends run the export view (backbone, RPN, the RoI level's map) and the
    framework the rest: from the view's outputs each twin gives what the whole model gives, masks included."""
    from compare import backends as B
    from compare.parity import same_init

    models, _ = same_init(twins, SPEC, "torch", 0)
    images = data.test.images[:4]
    for fw, twin in twins.items():
        view, keys = twin.task.export_view(models[fw], SPEC)
        finished = twin.task.finish_export(models[fw], SPEC, B.native_runner(fw, view, keys)(images))
        whole = twin.task.predict(models[fw], images)
        assert set(finished) == set(SPEC.output_keys)
        for key in SPEC.output_keys:
            np.testing.assert_allclose(finished[key], whole[key], rtol=0, atol=1e-5, err_msg=f"{fw} {key}")
