"""The anchor study of seed answer 23: every anchor set is scored on the same boxes, by IoU and by size."""

from __future__ import annotations

import numpy as np
import pytest

from shared.anchors import SIZE_RANGES, anchor_recall, anchor_study, generate_anchors, study_configs
from shared.data.detection import detection_split
from shared.specs import detection as D


@pytest.fixture(scope="module")
def study():
    spec, anchors = D.tiny_data(), D.tiny_anchors()
    boxes = detection_split(spec, "val").boxes
    return anchors, boxes, anchor_study(study_configs(anchors), spec.image_size, boxes)


def test_every_config_is_scored_on_the_same_boxes(study):
    base, boxes, rows = study
    assert [r["config"] for r in rows][0] == "base" and len(rows) == len(study_configs(base))
    total = sum(len(b) for b in boxes)
    for row in rows:
        assert row["boxes"] == total
        assert 0.0 <= row["recall@0.7"] <= row["recall@0.5"] <= 1.0, row
    assert rows[0]["recall@0.5"] == anchor_recall(generate_anchors(base, D.tiny_data().image_size), boxes, 0.5)


def test_the_size_ladder_is_nested_so_more_sizes_never_lose_recall(study):
    base, _, rows = study
    by_name = {r["config"]: r for r in rows}
    configs = study_configs(base)
    for one, three in zip(configs["1 size per level"].sizes, configs["3 sizes per level"].sizes):
        assert one[0] == pytest.approx(three[1])  # the single size is the middle rung of three
    assert by_name["3 sizes per level"]["recall@0.5"] >= by_name["1 size per level"]["recall@0.5"]
    assert by_name["3 sizes per level"]["anchors"] == 3 * by_name["1 size per level"]["anchors"]


def test_size_ranges_split_the_boxes_by_coco_area():
    anchors = D.AnchorSpec(strides=(8,), sizes=((16.0,),), aspect_ratios=((1.0,),))
    small = np.array([[4, 4, 20, 20]], np.float32)            # the anchor of cell (1, 1), exactly
    medium = np.array([[0, 0, 40, 40]], np.float32)           # no 16 px anchor reaches IoU 0.5
    rows = anchor_study({"only 16 px": anchors}, 64, [small, medium])
    assert rows[0]["recall_small"] == 1.0 and rows[0]["recall_medium"] == 0.0 and rows[0]["recall_large"] is None
    assert rows[0]["recall@0.5"] == 0.5
    assert list(SIZE_RANGES) == ["small", "medium", "large"]
