"""The parts of the harness that measure speed, on scripted inputs: the time-left estimate, the training-speed
probe's protocol, and the speed claims' verdict by model size. No test here asserts how fast anything is."""

from __future__ import annotations

import types

import numpy as np
import pytest

from compare import claims, training_speed
from compare.progress import CostBook, Progress, Step


def _silent(steps, costs=None, temperatures=None):
    return Progress(steps, costs, temperatures, printer=lambda s: None, bar=False)


def test_time_left_comes_from_earlier_runs_and_says_what_it_cannot_estimate(tmp_path):
    steps = [Step("t", "train", "train torch"), Step("t", "speed", "a: speed"), Step("t", "speed", "b: speed"),
             Step("t", "study", "study: x")]
    book = CostBook(tmp_path, "standard")
    book.put(steps[0], "cold", 60.0)
    book.put(steps[0], "warm", 1.0)
    book.put(steps[3], "cold", 30.0)
    cold = _silent(steps, book, {"t": "cold"})
    # Nothing done yet: the two speed steps have no estimate (no earlier run, no step of their kind done).
    assert cold.left() == (90.0, 2)
    assert "~1:30 left + 2 steps of kinds not timed yet" == cold.describe_left()
    # Warm: training takes its warm cost; the study costs the same warm or cold; the speed steps are unknown.
    warm = _silent(steps, book, {"t": "warm"})
    assert warm.left() == (31.0, 2)


def test_first_run_estimates_a_step_from_the_steps_of_its_kind_done_so_far():
    steps = [Step("t", "speed", f"{b}: speed") for b in "abc"]
    progress = _silent(steps)
    assert progress.describe_left() == "time left not estimated yet"
    progress.step("t", "speed", "a: speed")
    progress.done[steps[0]] = 2.0  # as if the first backend took 2 s
    progress.current = None
    seconds, unknown = progress.left()
    assert (seconds, unknown) == (4.0, 0)


def test_step_costs_are_kept_for_the_next_run(tmp_path):
    steps = [Step("t", "data", "data"), Step("t", "train", "train torch")]
    progress = _silent(steps, CostBook(tmp_path, "quick"), {"t": "cold"})
    progress.step("t", "data", "data")
    progress.step("t", "train", "train torch")
    progress.finish()
    again = CostBook(tmp_path, "quick")
    assert again.get(steps[0], "cold") is not None and again.get(steps[1], "cold") is not None
    assert CostBook(tmp_path, "standard").get(steps[0], "cold") is None  # per profile
    (tmp_path / "step-costs.json").write_text("{not json")
    assert CostBook(tmp_path, "quick").get(steps[0], "cold") is None  # a damaged file costs the estimate only


def _fake_twin(reference_seconds, twin_seconds, calls):
    def loop(seconds, label):
        def make(model, spec, loss_fn, images, targets, **kwargs):
            script = iter(seconds)

            def run(batches):
                calls.append((label, len(batches)))
                return next(script)
            return run
        return make

    training = types.SimpleNamespace(reference_loop=loop(reference_seconds, "reference"),
                                     twin_loop=loop(twin_seconds, "twin"))
    return types.SimpleNamespace(framework="torch", training=training, task=types.SimpleNamespace(compute_loss=None))


def test_training_probe_alternates_rounds_and_takes_the_median_ratio():
    spec = types.SimpleNamespace(task="classification", train=types.SimpleNamespace(batch_size=4, epochs=1, seed=0))
    split = types.SimpleNamespace(images=np.zeros((40, 8, 8, 3), np.float32), targets=np.zeros(40, np.int64))
    calls = []
    # warm-up, then 3 rounds: the twin at 1/1.0, 1/0.8 and 1/0.5 of the reference's speed.
    twin = _fake_twin([9.0, 1.0, 1.0, 1.0], [9.0, 1.0, 1.25, 2.0], calls)
    result = training_speed.measure(twin, spec, split, lambda fw: None, training_speed.ProbeBudget(steps=2, rounds=3))
    assert result["ratios"] == [1.0, 0.8, 0.5] and result["ratio"] == 0.8 and not result["ok"]
    assert result["reference_images_per_s"] == 8.0 and result["twin_images_per_s"] == 8 / 1.25
    # Warm-up pair first, then alternating who goes first; every chunk is `steps` full batches.
    assert [c[0] for c in calls] == ["reference", "twin", "reference", "twin", "twin", "reference", "reference", "twin"]
    assert {c[1] for c in calls} == {2}


def test_training_probe_needs_enough_full_batches():
    spec = types.SimpleNamespace(task="classification", train=types.SimpleNamespace(batch_size=64, epochs=1, seed=0))
    split = types.SimpleNamespace(images=np.zeros((10, 8, 8, 3), np.float32), targets=np.zeros(10, np.int64))
    with pytest.raises(ValueError, match="full batches of 64"):
        training_speed.measure(_fake_twin([], [], []), spec, split, lambda fw: None, training_speed.ProbeBudget(2, 2))


def _speed(rows):
    return [{"backend": b, "batch": n, "p50_ms": ms, "cv": 0.01} for b, n, ms in rows]


def test_speed_claim_says_where_its_verdict_changes_with_model_size():
    compiled_wins = _speed([("tensorflow-eager", 1, 10.0), ("tensorflow", 1, 2.0), ("torch", 1, 4.0),
                            ("torch-compile", 1, 1.0)])
    no_gain = _speed([("tensorflow-eager", 1, 150.0), ("tensorflow", 1, 180.0), ("torch", 1, 60.0),
                      ("torch-compile", 1, 80.0)])
    results = {"tasks": {"classification": {"speed": compiled_wins, "flops_per_image": 1e6}},
               "workloads": {"resnet50": {"speed": no_gain, "flops_per_image": 8.2e9, "image_size": 224}}}
    verdict, evidence = claims.static_graph(results, {}, {})
    assert verdict == claims.MIXED
    assert evidence[0] == "task model: supported; ResNet-size: refuted (the verdict changes with model size)"
    assert "resnet50@224: 8.2 GFLOP/image" in evidence[1]
    # A compiled form inside the noise of eager is a tie, and a tie beside a win is mixed, not supported.
    tie = _speed([("tensorflow-eager", 1, 150.0), ("tensorflow", 1, 50.0), ("torch", 1, 60.0),
                  ("torch-compile", 1, 58.0)])
    verdict, evidence = claims.static_graph({"tasks": {"m": {"speed": tie}}}, {}, {})
    assert verdict == claims.MIXED and evidence[-1].endswith(": tie"), evidence
    only_small = {"tasks": results["tasks"]}
    assert claims.static_graph(only_small, {}, {})[0] == claims.SUPPORTED


def test_a_latency_gap_inside_the_timing_noise_is_a_tie():
    noisy = [{"backend": b, "batch": 1, "p50_ms": ms, "cv": 0.2} for b, ms in
             (("tflite-fp32", 1.0), ("torch-compile", 1.3))]
    block = {"speed": noisy}
    assert claims.beats(block, "torch-compile", "tflite-fp32", 1) is False  # 1.3x < 1 + 2 x 0.2
    block["speed"][1]["cv"] = block["speed"][0]["cv"] = 0.01
    assert claims.beats(block, "torch-compile", "tflite-fp32", 1) is True
    assert claims.faster(block, "tflite-fp32", "torch-compile", 1) == -1  # the reverse beyond the noise


def test_verdicts_from_points_follow_the_tie_rule():
    assert claims.verdict_from([1, 1]) == claims.SUPPORTED
    assert claims.verdict_from([0, 0]) == claims.TIE
    assert claims.verdict_from([-1, 0]) == claims.REFUTED  # never holds beyond the noise, the reverse somewhere
    assert claims.verdict_from([1, 0]) == claims.MIXED and claims.verdict_from([1, -1]) == claims.MIXED
    assert claims.verdict_from([]) == claims.NOT_MEASURABLE


def test_production_claim_is_a_tie_when_sizes_and_latencies_are_within_noise():
    """The issue's example: 1,237,452 B against 1,245,268 B (0.6%) and a batch-1 latency with CV 0.71."""
    speed = [{"backend": "tflite-fp32", "batch": 1, "p50_ms": 0.30, "cv": 0.71},
             {"backend": "onnxruntime-from-torch", "batch": 1, "p50_ms": 0.40, "cv": 0.02}]
    size = [{"artifact": "onnx-from-tensorflow", "bytes": 1_237_452, "framework": "tensorflow"},
            {"artifact": "onnx-from-torch", "bytes": 1_245_268, "framework": "torch"}]
    exports = [{"artifact": "tflite-fp32", "framework": "tensorflow", "status": "ok"}]
    results = {"tasks": {"classification": {"speed": speed, "size": size, "exports": exports}}}
    verdict, evidence = claims.tf_production(results, {}, {})
    assert verdict == claims.TIE, evidence
    assert any("= 0.994" in line and line.endswith(": tie") for line in evidence), evidence
    assert any("differs beyond 2.42x" in line for line in evidence), evidence  # 1 + 2 x 0.71
