"""COCO box metrics (shared.metrics.detection) on the generated detection set: the ground truth scores 1,
nothing scores 0, a worse box scores lower, and bad predictions are named."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from shared.data.detection import detection_split
from shared.metrics.detection import STAT_NAMES, coco_metrics
from shared.specs.detection import tiny_data


@pytest.fixture(scope="module")
def split():
    return detection_split(tiny_data(), "val")


def _ground_truth(split, shift: float = 0.0):
    return [{"boxes": b + shift, "scores": np.ones(len(y), np.float32), "labels": y}
            for b, y in zip(split.boxes, split.labels)]


def test_ground_truth_as_predictions_scores_one_and_prints_nothing(split):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        metrics = coco_metrics(_ground_truth(split), split)
    assert out.getvalue() == ""
    assert set(metrics) == set(STAT_NAMES)
    for name in ("map", "map50", "map75", "ar10", "ar100"):     # at most 6 objects per image: ar1 is lower
        assert metrics[name] == pytest.approx(1.0), name


def test_no_predictions_score_zero(split):
    empty = [{"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32),
              "labels": np.zeros(0, np.int64)} for _ in range(len(split))]
    assert coco_metrics(empty, split) == {name: 0.0 for name in STAT_NAMES}


def test_shifted_boxes_and_wrong_classes_lower_the_metrics(split):
    perfect = coco_metrics(_ground_truth(split), split)
    shifted = coco_metrics(_ground_truth(split, shift=3.0), split)
    assert shifted["map"] < perfect["map"] and shifted["map75"] < perfect["map75"]
    assert shifted["map50"] > shifted["map"] > 0.0
    relabelled = [{**d, "labels": (d["labels"] + 1) % 6} for d in _ground_truth(split)]
    # Near zero, not zero: an occluded object's box can overlap another object of the next class.
    assert coco_metrics(relabelled, split)["map50"] < 0.01


def test_bad_predictions_are_named(split):
    preds = _ground_truth(split)
    with pytest.raises(ValueError, match=rf"expected one entry per image of the split \({len(split)}\); received 3"):
        coco_metrics(preds[:3], split)
    bad = list(preds)
    bad[2] = {**bad[2], "boxes": np.zeros((len(bad[2]["labels"]), 5))}
    with pytest.raises(ValueError, match=r"predictions\[2\]\['boxes'\]: expected shape \[D, 4\]"):
        coco_metrics(bad, split)
    bad[2] = {"boxes": np.zeros((1, 4))}
    with pytest.raises(ValueError, match=r"predictions\[2\]: expected a dict with 'boxes', 'scores' and 'labels'"):
        coco_metrics(bad, split)
    unknown = [{**d, "labels": d["labels"] + 10} for d in preds]
    with pytest.raises(ValueError, match=r"labels \[10, 11, .*\] are not class ids of the data set \[0, 1, 2, 3, 4, 5"):
        coco_metrics(unknown, split)
