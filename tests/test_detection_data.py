"""The generated detection set: deterministic, consistent boxes and masks, occlusion, COCO ground truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from shared.anchors import anchor_recall, generate_anchors
from shared.data.detection import detection_split, load_detection, mask_to_rle, masks_to_boxes, to_coco
from shared.specs import SpecError, spec_key
from shared.specs.detection import (DETECTION_CLASSES, AnchorSpec, DetectionDataSpec, standard_anchors,
                                    standard_data, tiny_anchors, tiny_data)

SPEC = DetectionDataSpec(image_size=48, n_train=40, n_val=8, n_test=16, min_object_size=0.15, seed=11)


@pytest.fixture(scope="module")
def data():
    return load_detection(SPEC)


def test_splits_have_the_documented_shapes_and_dtypes(data):
    assert data.class_names == DETECTION_CLASSES
    for split, n in ((data.train, 40), (data.val, 8), (data.test, 16)):
        assert len(split) == n and split.images.shape == (n, 48, 48, 3) and split.images.dtype == np.float32
        assert 0.0 <= split.images.min() and split.images.max() <= 1.0 and split.images.std() > 0.05
        for boxes, labels, masks, visible, fraction in zip(split.boxes, split.labels, split.masks,
                                                          split.visible_masks, split.visible_fraction):
            k = len(labels)
            assert boxes.shape == (k, 4) and boxes.dtype == np.float32
            assert labels.dtype == np.int64 and ((0 <= labels) & (labels < len(DETECTION_CLASSES))).all()
            assert masks.shape == visible.shape == (k, 48, 48) and masks.dtype == visible.dtype == bool
            assert fraction.shape == (k,) and fraction.dtype == np.float32
        targets = split.targets
        assert len(targets) == n and set(targets[0]) == {"boxes", "labels"}


def test_same_seed_same_data_other_seed_or_split_other_data(data):
    again = load_detection(SPEC)
    np.testing.assert_array_equal(data.train.images, again.train.images)
    for a, b in zip(data.train.boxes, again.train.boxes):
        np.testing.assert_array_equal(a, b)
    other = detection_split(dataclasses.replace(SPEC, seed=12), "train")
    assert not np.array_equal(other.images, data.train.images)
    assert not np.array_equal(data.train.images[:8], data.val.images)
    assert not np.array_equal(data.train.images[:16], data.test.images)
    # Image i comes from its own generator: a longer split starts with the same images.
    longer = detection_split(dataclasses.replace(SPEC, n_val=12), "val")
    np.testing.assert_array_equal(longer.images[:8], data.val.images)


def test_boxes_are_the_tight_boxes_of_the_full_masks_inside_the_image(data):
    for split in (data.train, data.test):
        for boxes, masks in zip(split.boxes, split.masks):
            np.testing.assert_array_equal(boxes, masks_to_boxes(masks))
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 48).all()
            assert ((boxes[:, 2:] - boxes[:, :2]) >= 1).all()
            for (x1, y1, x2, y2), mask in zip(boxes.astype(int), masks):
                inside = mask[y1:y2, x1:x2]
                assert inside.sum() == mask.sum()                                  # the box holds the object
                assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()  # tight


def test_visible_masks_are_what_later_objects_leave_uncovered(data):
    for masks, visible, fraction in zip(data.train.masks, data.train.visible_masks, data.train.visible_fraction):
        assert not (visible & ~masks).any()                       # visible part of the object itself
        assert (visible.sum(axis=0) <= 1).all()                   # each pixel shows one object at most
        for k in range(len(masks)):
            np.testing.assert_array_equal(visible[k], masks[k] & ~masks[k + 1:].any(axis=0))
        np.testing.assert_allclose(fraction, visible.sum(axis=(1, 2)) / masks.sum(axis=(1, 2)), rtol=1e-6)
        assert (fraction > SPEC.min_visible_fraction).all() and (fraction <= 1.0).all()
        assert fraction[-1] == 1.0                                # the last object painted is never covered


def test_occlusion_happens_and_object_counts_span_the_range(data):
    counts = np.concatenate([s.num_objects for s in (data.train, data.val, data.test)])
    assert counts.min() >= SPEC.min_objects and counts.max() <= SPEC.max_objects
    assert set(counts.tolist()) == set(range(SPEC.min_objects, SPEC.max_objects + 1))
    occluded = [bool((f < 1).any()) for f in data.train.visible_fraction]
    assert 0.2 < np.mean(occluded) < 1.0, np.mean(occluded)
    assert set(np.concatenate(data.train.labels).tolist()) == set(range(len(DETECTION_CLASSES)))


def test_objects_stand_out_from_the_background(data):
    from scipy.ndimage import binary_dilation

    contrasts = []
    for image, visible in zip(data.train.images, data.train.visible_masks):
        for v in visible:
            ring = binary_dilation(v, iterations=2) & ~visible.any(axis=0)   # background just outside the object
            if ring.sum() >= 8:
                contrasts.append(np.abs(image[v].mean(axis=0) - image[ring].mean(axis=0)).sum())
    # Mean colour distance (L1 over RGB) between each object and the background around it.
    assert len(contrasts) > 50 and np.percentile(contrasts, 5) > 0.2, np.percentile(contrasts, [0, 5, 50])


def test_without_occlusion_objects_never_overlap():
    split = detection_split(dataclasses.replace(SPEC, occlusion=False, n_train=20), "train")
    for masks, fraction in zip(split.masks, split.visible_fraction):
        assert (masks.sum(axis=0) <= 1).all() and (fraction == 1.0).all()


def test_to_coco_loads_in_pycocotools_and_scores_itself_perfectly(data):
    split = data.test
    gt = to_coco(split)
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    assert sorted(coco.getImgIds()) == list(range(len(split)))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(DETECTION_CLASSES)
    assert len(coco.getAnnIds()) == sum(len(y) for y in split.labels)
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[3]))[0]
    x1, y1, x2, y2 = split.boxes[3][0]
    assert ann["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1]) and ann["iscrowd"] == 0
    assert ann["category_id"] == split.labels[3][0] and ann["area"] == split.masks[3][0].sum()
    # The ground truth as detections: COCOeval must give AP 1 (ids, boxes and categories line up).
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in gt["annotations"]]
    evaluator = COCOeval(coco, coco.loadRes(dets), "bbox")
    evaluator.params.areaRng = [[0, 1e5]] * 4                    # small objects count too
    evaluator.evaluate(), evaluator.accumulate()
    _quiet_summarize(evaluator)
    assert evaluator.stats[0] == pytest.approx(1.0) and evaluator.stats[1] == pytest.approx(1.0)


def _quiet_summarize(evaluator):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.summarize()


@pytest.mark.parametrize("which", ["visible", "full"])
def test_coco_segmentation_round_trips_through_pycocotools(data, which):
    split = data.val
    coco = COCO()
    coco.dataset = to_coco(split, segmentation=which)
    coco.createIndex()
    masks = split.visible_masks if which == "visible" else split.masks
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[0, 1, 2])):
        k = [a["id"] for a in coco.loadAnns(coco.getAnnIds(imgIds=[ann["image_id"]]))].index(ann["id"])
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), masks[ann["image_id"]][k])
    corner = np.zeros((5, 4), bool)
    corner[0, 0] = corner[4, 3] = True                            # runs that start and end on a set pixel
    decoded = mask_utils.decode(mask_utils.frPyObjects(mask_to_rle(corner), 5, 4))
    np.testing.assert_array_equal(decoded.astype(bool), corner)
    with pytest.raises(ValueError, match=r"segmentation: expected None, 'visible' or 'full'; received 'amodal'"):
        to_coco(split, segmentation="amodal")


def test_masks_to_boxes_uses_pixel_edges():
    masks = np.zeros((2, 6, 8), bool)
    masks[0, 2, 3] = True                                          # one pixel at row 2, column 3
    masks[1, 1:4, 0:8] = True
    np.testing.assert_array_equal(masks_to_boxes(masks), [[3, 2, 4, 3], [0, 1, 8, 4]])
    with pytest.raises(ValueError, match=r"masks: expected every mask to have a pixel; masks \[0\] are empty"):
        masks_to_boxes(np.zeros((1, 4, 4), bool))


def test_presets_generate_quickly_and_their_anchors_reach_the_objects():
    spec = tiny_data()
    assert spec.image_size == 64 and 100 <= spec.n_train <= 1000
    assert standard_data().image_size == 128
    assert spec_key(tiny_data()) == spec_key(tiny_data()) != spec_key(standard_data())
    train = detection_split(dataclasses.replace(spec, n_train=96), "train")
    recall = anchor_recall(generate_anchors(tiny_anchors(), spec.image_size), train.boxes, 0.5)
    assert recall >= 0.9, recall
    assert generate_anchors(standard_anchors(), 128).shape == (2784, 4)


@pytest.mark.parametrize("factory,kwargs,message", [
    (DetectionDataSpec, {"image_size": 8}, r"data.image_size: expected an integer in \[16, 1024\]; received: 8"),
    (DetectionDataSpec, {"n_val": 0}, r"data.n_val: expected an integer in \[1, 1000000\]; received: 0"),
    (DetectionDataSpec, {"min_objects": 0}, r"data.min_objects: expected an integer in \[1, 50\]; received: 0"),
    (DetectionDataSpec, {"min_objects": 4, "max_objects": 3},
     r"data.max_objects: expected an integer >= data.min_objects \(4\); received: 3"),
    (DetectionDataSpec, {"min_object_size": 0.4, "max_object_size": 0.3},
     r"data.max_object_size: expected a number >= data.min_object_size \(0.4\); received: 0.3"),
    (DetectionDataSpec, {"max_object_size": 1.5}, r"data.max_object_size: expected a number in \[0.01, 1.0\]"),
    (DetectionDataSpec, {"image_size": 32, "min_object_size": 0.05},
     r"data.min_object_size: expected objects of at least 4 px, i.e. >= 0.125 at image_size 32; received: 0.05"),
    (DetectionDataSpec, {"occlusion": "yes"}, r"data.occlusion: expected True or False; received: 'yes'"),
    (DetectionDataSpec, {"min_visible_fraction": 0.95},
     r"data.min_visible_fraction: expected a number in \[0.0, 0.9\]"),
    (DetectionDataSpec, {"seed": -1}, r"data.seed: expected an integer in \[0, 2147483647\]"),
    (AnchorSpec, {"strides": (8, 0)}, r"anchors.strides\[1\]: expected an integer in \[1, 1024\]; received: 0"),
    (AnchorSpec, {"strides": [8]}, r"anchors.strides: expected a non-empty tuple of integers; received: \[8\]"),
    (AnchorSpec, {"strides": (8, 16)}, r"anchors.sizes: expected a tuple with one tuple per level \(2 levels"),
    (AnchorSpec, {"strides": (8,), "sizes": ((),), "aspect_ratios": ((1.0,),)},
     r"anchors.sizes\[0\]: expected a non-empty tuple of numbers; received: \(\)"),
    (AnchorSpec, {"strides": (8,), "sizes": ((16.0,),), "aspect_ratios": ((1.0, -2.0),)},
     r"anchors.aspect_ratios\[0\]\[1\]: expected a number in \[0.05, 20.0\]; received: -2.0"),
])
def test_invalid_specs_fail_at_construction(factory, kwargs, message):
    with pytest.raises(SpecError, match=message):
        factory(**kwargs)


def test_impossible_crowding_fails_with_the_fields_to_change():
    spec = DetectionDataSpec(image_size=32, n_train=1, min_objects=3, max_objects=3, min_object_size=0.9,
                             max_object_size=0.9, occlusion=False)
    with pytest.raises(RuntimeError, match=r"could not place 3 objects \(data.min_objects\).*lower data.min_objects"):
        detection_split(spec, "train")


def test_unknown_split_is_named():
    with pytest.raises(ValueError, match=r"split: expected one of \['test', 'train', 'val'\]; received 'dev'"):
        detection_split(SPEC, "dev")
