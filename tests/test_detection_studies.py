"""The detection task's studies (compare/tasks/detection.py): scoring one band of occlusion at a time, the random
erasing augmentation of both twins, the anchor table, and the variants registry they run under."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from compare.studies import StudyContext, studies_for
from compare.tasks.detection import VISIBLE_BANDS, anchor_study, occlusion_scores
from shared.data.detection import detection_split, masks_to_boxes
from shared.metrics.detection import coco_metrics
from shared.specs import SpecError, get_spec, run_name, split_run_name
from shared.specs.detection import ErasingSpec, tiny, tiny_data


@pytest.fixture(scope="module")
def split():
    return detection_split(dataclasses.replace(tiny_data(), n_val=96), "val")


def _as_detections(boxes, labels):
    return [{"boxes": b.astype(np.float32), "scores": np.ones(len(y), np.float32), "labels": y}
            for b, y in zip(boxes, labels)]


def test_ignored_objects_are_neither_misses_nor_false_positives(split):
    truth = _as_detections(split.boxes, split.labels)
    # Keep one object per image in the detections, ignore the others in the ground truth: still perfect.
    first = [{k: v[:1] for k, v in d.items()} for d in truth]
    ignore = [np.arange(len(y)) > 0 for y in split.labels]
    assert coco_metrics(first, split, ignore)["map50"] == pytest.approx(1.0)
    assert coco_metrics(first, split)["map50"] < 0.9  # without ignoring, the others are misses
    with pytest.raises(ValueError, match="ignore: expected one bool array per image"):
        coco_metrics(first, split, ignore[:3])


def test_occlusion_bands_of_perfect_and_of_visible_part_detections(split):
    counted = sum(r["objects"] for r in occlusion_scores(split, _as_detections(split.boxes, split.labels)))
    assert counted == sum(len(y) for y in split.labels)  # the bands cover every object once
    for row in occlusion_scores(split, _as_detections(split.boxes, split.labels)):
        if row["objects"]:
            assert row["map50"] == pytest.approx(1.0) and row["map50_agnostic"] == pytest.approx(1.0), row
            assert row["iou_full_box"] == pytest.approx(1.0) and row["found"] == row["objects"]
    visible = [masks_to_boxes(m) for m in split.visible_masks]
    rows = occlusion_scores(split, _as_detections(visible, split.labels))
    occluded = [r for r in rows if r["objects"] and r["high"] < 0.999 and r["found"]]
    assert occluded, rows
    for row in occluded:  # boxes of the visible part: closer to it than to the full box
        assert row["iou_visible_box"] == pytest.approx(1.0) and row["iou_full_box"] < 1.0
    assert [(r["low"], r["high"]) for r in rows] == list(VISIBLE_BANDS)


def test_anchor_study_table_and_verdict(split):
    data = type("Data", (), {"val": split})()
    study = anchor_study(StudyContext(tiny(), data, {}, {}, None))
    names = [r["config"] for r in study["rows"]]
    assert names[0] == "base" and any(n.startswith("one level") for n in names)
    assert all(0.0 <= r["recall@0.5"] <= 1.0 and r["recall@0.7"] <= r["recall@0.5"] for r in study["rows"])
    assert study["verdicts"][0]["verdict"] in {"supported", "mixed", "refuted"}
    assert set(study["plot"]["series"]) == {"IoU 0.5", "IoU 0.7"}


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_random_erasing_changes_images_not_targets(framework, split):
    import importlib

    train = importlib.import_module(f"{'pytorch_impl' if framework == 'torch' else 'tensorflow_impl'}"
                                    ".detection.train")
    assert train.random_erasing(tiny()) is None  # off by default
    spec = dataclasses.replace(tiny(), erasing=ErasingSpec(probability=1.0, scale=(0.1, 0.2)))
    images = split.images[:8]
    if framework == "torch":
        import torch

        out = train.random_erasing(spec)(torch.from_numpy(images).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    else:
        out = np.asarray(train.random_erasing(spec)(images))
    assert out.shape == images.shape and out.dtype == np.float32
    changed = (np.abs(out - images).max(-1) > 0).reshape(8, -1).mean(1)
    # Every image erased (p = 1), each over about 10-20% of its area (noise may equal a pixel by chance).
    assert np.all(changed > 0.05) and np.all(changed < 0.25), changed


def test_erasing_spec_rejects_bad_values():
    with pytest.raises(SpecError, match="erasing.probability"):
        ErasingSpec(probability=1.5)
    with pytest.raises(SpecError, match=r"erasing.scale: expected a \(low, high\) tuple"):
        ErasingSpec(scale=(0.3, 0.1))


def test_variants_resolve_and_unknown_ones_are_named():
    assert get_spec("detection", "tiny", "yolo").model.detector == "yolo"
    assert get_spec("detection", "standard", "faster_rcnn").model.detector == "faster_rcnn"
    assert get_spec("detection", "standard").model.detector == "ssd"
    with pytest.raises(SpecError, match=r"unknown variant 'retina' of task 'detection'; expected one of "
                                        r"\['faster_rcnn', 'yolo'\]"):
        get_spec("detection", "tiny", "retina")
    assert run_name("detection", "yolo") == "detection.yolo" and split_run_name("detection.yolo") == (
        "detection", "yolo")
    assert split_run_name("classification") == ("classification", None)
    # The boxes picture runs for every detector, the anchor study for the main one, the occlusion study (two more
    # trainings) for the quickest to train.
    assert [s.name for s in studies_for("detection", None)] == ["boxes", "anchors"]
    assert [s.name for s in studies_for("detection", "yolo")] == ["boxes", "occlusion"]
    assert [s.name for s in studies_for("detection", "faster_rcnn")] == ["boxes"]
    assert studies_for("classification", None) == []


def test_a_variant_starts_from_the_trained_body_of_the_run_it_names(tmp_path):
    """``body_from``: the body tensors come from the named run's cached reference weights, the heads from the
    seeded initialisation, the same in both frameworks; a missing source is a clear error; the cache key
    follows the source's spec."""
    from compare.pipeline import TaskRun, run_cache
    from compare.progress import Progress

    assert get_spec("detection", "standard", "yolo").body_from == "detection"
    assert get_spec("detection", "standard", "faster_rcnn").body_from == "detection"
    with pytest.raises(SpecError, match="body_from"):
        dataclasses.replace(tiny(), body_from="")
    run = TaskRun("detection", "quick", tmp_path, 1, Progress([], printer=lambda s: None), variant="yolo")
    twins = run.twins
    plain_key = run.cache.dir.name
    run.spec = dataclasses.replace(run.spec, body_from="detection")
    assert run_cache(tmp_path, run.name, "tiny", run.spec).dir.name != plain_key
    with pytest.raises(RuntimeError, match="starts from the trained body of 'detection'"):
        run.initial_model("torch")
    source = twins["torch"].task.build_model(get_spec("detection", "tiny"))
    trained = {k: np.random.default_rng(1).standard_normal(v.shape).astype(np.float32)
               for k, v in twins["torch"].bridge.export_weights(source).items()}
    twins["torch"].bridge.save_weights(twins["torch"].bridge.import_weights(source, trained),
                                       run_cache(tmp_path, "detection", "tiny").path("trained-torch.safetensors"))
    seeded = run.initial_model("torch").state_dict()
    for fw in ("torch", "tensorflow"):
        tensors = twins[fw].bridge.export_weights(run.initial_model(fw))
        body = [k for k in tensors if k.startswith(run.spec.body_keys)]
        assert body and all(np.array_equal(tensors[k], trained[k]) for k in body), fw
        heads = [k for k in tensors if k.startswith("obj_head.")]
        assert heads and all(np.allclose(tensors[k], seeded[k].numpy()) for k in heads), fw
