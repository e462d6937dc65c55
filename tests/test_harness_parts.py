"""Smaller pieces of the harness: timing, code counting, the study guide, the store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from compare import codepair, guide, speed, store

ROOT = Path(__file__).resolve().parent.parent


def test_timing_reports_a_spread():
    result = speed.time_call(lambda _: time.sleep(0.002), None, speed.TimingBudget(warmup_max_s=0.2, max_time_s=0.3))
    assert 1.5 < result["p50_ms"] < 50 and result["p90_ms"] >= result["p50_ms"] and result["runs"] >= 3


def _scripted(per_call_seconds):
    """A clock that returns the scripted per-call times in order (then the last forever), recording ``number``."""
    script, numbers = iter(per_call_seconds), []

    def clock(run, arg, number):
        numbers.append(number)
        clock.last = next(script, clock.last)
        return clock.last

    clock.last, clock.numbers = per_call_seconds[0], numbers
    return clock


def test_short_calls_are_timed_in_groups_of_at_least_a_sample():
    """A 0.1 ms call is timed 100 at a time (10 ms samples: timeit's 1, 2, 5, 10, ... rule), and a steady one
    stops after one window."""
    budget = speed.TimingBudget(window=8)
    clock = _scripted([1e-4])
    result = speed.time_call(None, None, budget, clock=clock)
    assert result["number"] == 100 and set(clock.numbers[-result["samples"]:]) == {100}
    assert result["p50_ms"] == pytest.approx(0.1) and result["cv"] == 0 and result["stable"]
    assert result["runs"] == result["samples"] == 8


def test_noisy_timings_stop_at_the_limit_and_are_flagged():
    budget = speed.TimingBudget(window=4, max_samples=12, max_time_s=60)
    result = speed.time_call(None, None, budget, clock=_scripted([0.02] * 7 + [0.02, 0.03] * 50))
    assert not result["stable"] and result["samples"] == 12 and result["runs"] == 12
    assert result["cv"] > budget.target_cv


def test_a_settled_window_is_reported_without_the_noisy_start():
    budget = speed.TimingBudget(window=4, max_samples=40, max_time_s=60)
    # Warm-up (two windows of 3 calls), one call sizes the sample (20 ms: 1 call), 3 noisy samples, then steady.
    result = speed.time_call(None, None, budget, clock=_scripted([0.02] * 7 + [0.05, 0.01, 0.04] + [0.02] * 40))
    assert result["stable"] and result["samples"] == 3 + 4 and result["runs"] == 4
    assert result["p50_ms"] == pytest.approx(20.0) and result["cv"] == 0


def test_code_lines_skip_comments_docstrings_and_blanks():
    source = '"""Module doc."""\n\n# comment\ndef f(x):\n    """Doc\n    more."""\n    return x  # trailing\n'
    assert codepair.code_lines(source) == 2


def test_api_calls_count_framework_calls_only():
    import ast

    tree = ast.parse("import torch\nx = torch.zeros(3)\ny = nn.Conv2d(1, 2, 3)\nz = len(x)\nw = x.sum()\n")
    assert codepair.api_calls(tree, "torch") == 2


def test_every_twin_module_pairs_up():
    pairs = codepair.module_pairs()
    assert {p.path for p in pairs} >= {"classification/model.py", "layers.py", "training.py", "export.py"}
    model = next(p for p in pairs if p.path == "classification/model.py")
    from tensorflow_impl.classification.model import FRAMEWORK_SPECIFIC  # declared: one framework has it

    public = {n: pair for n, pair in model.blocks.items() if not n.startswith("_") and n not in FRAMEWORK_SPECIFIC}
    assert all(a is not None and b is not None for a, b in public.values()), public.keys()
    assert model.blocks["build_functional"][0] is None and model.blocks["build_functional"][1] is not None


def test_study_guide_file_is_current():
    """docs/GUIDE.md is generated from the registry; regenerate it with `twinvision guide --write docs/GUIDE.md`."""
    assert (ROOT / "docs" / "GUIDE.md").read_text() == guide.markdown()
    rows = guide.entries()
    assert [r["number"] for r in rows] == list(range(1, 31))
    assert all(r["tasks"] or r["number"] in guide.HARNESS for r in rows), "a question maps to nothing"


def test_store_round_trip(tmp_path):
    results = {"run": {"id": "r1", "started": "2026-01-01T00:00:00", "profile": "quick"},
               "tasks": {"classification": {"status": "ok", "parity": [{"ok": True}], "quality": {},
                                            "speed": [{"backend": "torch", "batch": 1, "p50_ms": 2.0}]}}}
    store.append(tmp_path / "h.sqlite", results, tmp_path)
    rows = store.runs(tmp_path / "h.sqlite")
    assert rows[0]["id"] == "r1" and rows[0]["parity_ok"] == 1
    assert rows[0]["summary"]["classification"]["fastest_b1"] == "torch 2 ms"
    assert store.results_of(tmp_path / "h.sqlite", "r1")["run"]["id"] == "r1"


def test_a_calibrated_file_is_named_by_its_recipe():
    """Calibrated int8 files depend on settings outside the cache key (calibration images, QAT steps, the CPU's
    weight range) and on harness code: any change names a new file, the same recipe the same file."""
    from compare import quantization
    from compare.cache import recipe_name
    from compare.stages import quantize

    settings = {"calibration": 256, "steps": 40, "lr": 2e-4, "int8": {"name": "s8-vnni"}}
    name = recipe_name("model-int8.tflite", settings, quantize, quantization)
    assert name.startswith("model-int8-") and name.endswith(".tflite") and len(name) == len("model-int8-.tflite") + 8
    assert recipe_name("model-int8.tflite", dict(reversed(settings.items())), quantize, quantization) == name
    assert recipe_name("model-int8.tflite", {**settings, "calibration": 64}, quantize, quantization) != name
    assert recipe_name("model-int8.tflite", {**settings, "int8": {"name": "s7"}}, quantize, quantization) != name
    assert recipe_name("model-int8.tflite", settings, quantize) != name  # the making code is part of the recipe
    assert recipe_name("model-torch-int8.onnx", settings, quantize, quantization).endswith(".onnx")


def test_a_cache_folder_is_cold_until_it_holds_a_file(tmp_path):
    """A report times a task as cold when nothing of it was cached, including the empty folder a run killed
    before its first file leaves behind."""
    from compare.cache import TaskCache
    from shared.specs import get_spec

    spec = get_spec("classification", "tiny")
    assert TaskCache(tmp_path, "classification", "tiny", spec).fresh
    assert TaskCache(tmp_path, "classification", "tiny", spec).fresh  # the folder exists, empty
    TaskCache(tmp_path, "classification", "tiny", spec).path("trained-torch.safetensors").write_bytes(b"x")
    assert not TaskCache(tmp_path, "classification", "tiny", spec).fresh


# -- a second task through the same harness: detection ------------------------------------------------

def test_detection_metrics_go_through_the_twins_postprocess():
    import numpy as np
    import pytest

    from shared.data import load, training_targets
    from shared.metrics import evaluate_outputs, primary_metric
    from shared.specs import get_spec

    spec = get_spec("detection", "tiny")
    split = load(spec).test
    with pytest.raises(ValueError, match="needs the twin's postprocess"):
        evaluate_outputs(spec, {}, split)
    truth = [{"boxes": b, "scores": np.ones(len(b), np.float32), "labels": y}
             for b, y in zip(split.boxes, split.labels)]
    metrics = evaluate_outputs(spec, {}, split, postprocess=lambda outputs, s: truth)
    assert metrics[primary_metric("detection")] == 1.0 and metrics["map"] == 1.0
    packed = training_targets(split, spec)
    assert packed.shape == (len(split), max(len(y) for y in split.labels), 5)
    assert (packed[0, :len(split.labels[0]), 4] == split.labels[0]).all()


def test_every_finished_task_is_in_the_default_report():
    from compare.tasks import TaskPlugin, plugin
    from shared.specs import RUNNABLE, TASKS, check_task, model_name, ready_tasks

    assert check_task("detection").status == "ready"
    assert ready_tasks() == ["classification", "augmentation", "transfer_learning", "detection",
                             "semantic_segmentation", "instance_segmentation", "ocr", "distillation", "distributed"]
    assert (model_name("detection"), model_name("detection", "yolo"), model_name("classification")) == (
        "ssd", "yolo", "resnet")
    for name, entry in TASKS.items():  # every task with twins has a harness plug-in
        if entry.status in RUNNABLE:
            assert isinstance(plugin(name), TaskPlugin)
    with pytest.raises(ValueError,
                       match=r"no compare.tasks module for task 'tracking' \(expected compare/tasks/tracking.py with "
                             r"PLUGIN"):
        plugin("tracking")


def test_selected_rows_are_paired_by_box_not_by_slot():
    """Tied proposals in another order shift every later slot: rows pair by box and the RoI head's outputs
    are compared on the pairs; a proposal only one side selected fails, as does a paired row that differs."""
    import numpy as np

    from compare.parity import selection_parity
    from shared.specs import get_spec

    assert get_spec("detection", "tiny", "faster_rcnn").selected_outputs == {
        "proposals": ("cls_logits", "box_regression")}
    assert get_spec("detection", "tiny").selected_outputs == {}
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 90, (2, 40, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(5, 30, (2, 40, 2))], axis=-1)
    boxes[1, 36:] = 0.0                                             # padding slots: not proposals

    def outputs(props):
        return {"proposals": props, "cls_logits": props.sum(-1, keepdims=True) * [1.0, -0.5],
                "box_regression": np.tile(props, 2) / 7.0}

    def compare(b, dependents=("cls_logits", "box_regression")):
        return selection_parity("torch", "tensorflow", "backends", "proposals", dependents, outputs(boxes), b,
                                1e-5)

    reordered = boxes.copy()
    reordered[0, 10:39], reordered[0, 39] = boxes[0, 11:40], boxes[0, 10]     # slot 10 moved to the end
    entries = compare(outputs(reordered))
    assert [e["what"] for e in entries] == ["backends/proposals unmatched", "backends/proposals",
                                            "backends/cls_logits", "backends/box_regression"]
    assert all(e["ok"] for e in entries) and entries[0]["max_abs"] == 0.0, entries
    swapped = reordered.copy()
    swapped[0, 39] = [1.0, 2.0, 30.0, 40.0]                         # a box only one side selected
    entries = compare(outputs(swapped))
    assert entries[0]["max_abs"] == 1 / 40 and not entries[0]["ok"] and all(e["ok"] for e in entries[1:])
    wrong = outputs(reordered)
    wrong["cls_logits"][0, 3, 0] += 1.0
    assert [e["ok"] for e in compare(wrong, ("cls_logits",))] == [True, True, False]
    entries = compare(outputs(boxes[:, ::-1] + 0.5), ())
    assert not entries[0]["ok"] and "no proposals row" in entries[0]["error"]


@pytest.mark.parametrize("lo, hi", [(0.3, 0.45), (280.0, 370.0), (0.01, 1000.0), (1.0, 20.0), (0.15, 0.9)])
def test_log_axes_label_round_plain_numbers_whatever_the_span(lo, hi):
    """A log axis over less than a decade printed matplotlib's minor labels ("3 x 10^-1", "4 x 10^-1"), which
    overlapped in the report's quantization plot: every log axis has at least two plain-number labels, none
    in scientific notation and, on the wide spans, not one per digit."""
    import re

    from compare.report import plots

    fig, ax = plots._figure(width=4.0)
    ax.scatter([lo, hi], [1, 2])
    ax.set_xscale("log")
    svg = plots._svg(fig)
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert 2 <= len(labels) <= 8, labels
    assert all(re.fullmatch(r"\d+(\.\d+)?", t) for t in labels), labels
    assert not [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]
    assert "×" not in svg
