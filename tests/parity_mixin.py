"""Parity levels L1-L5 for every runnable model of the registry, each with the tolerances of its own spec.

``RUNS`` is every (task, variant) of ``shared.specs.TASKS`` whose status is runnable (variant None: the
task's main model). ``TwinParityMixin`` runs L1-L4 through ``compare.parity.run_parity`` (the report's entry
point) for each, and L5 where the twins post-process; tests/test_parity.py collects it, so a new task or
variant is tested by its registry entry. A task's own test file states only what differs, with the fixtures
of tests/conftest.py (``twins``, ``data``, ``trained`` of the module's ``RUN``), which load through here.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest

from compare.frameworks import load_twins
from compare.parity import postprocess_parity, run_parity, same_init
from shared import data as D
from shared.specs import RUNNABLE, TASKS, get_spec, run_name

PRESET = "tiny"
RUNS = [(task, variant) for task, e in TASKS.items() if e.status in RUNNABLE and not e.studies_on
        for variant in (None, *e.variants)]  # a study-only task's model is tested under the task it studies
L5_IMAGES = 16  # held-out test images whose post-processed outputs L5 compares
# L5 needs a trained model (peaked scores, real detections): ``trained_weights``'s (batch, steps, max loss
# ratio), measured per model; a model not listed trains with DEFAULT_RECIPE (the SSD's).
DEFAULT_RECIPE = (16, 40, 0.5)
RECIPES = {("detection", "yolo"): (16, 60, 0.7),          # until the objectness is confident
           ("detection", "faster_rcnn"): (8, 20, 0.8),    # real detections; its steps are slower
           ("instance_segmentation", None): (8, 20, 0.8)}  # the same detector, with its mask head


def assert_all_ok(entries: list[dict], context: str = "") -> None:
    """Fail on no comparisons or on any breach, listing every breach with its tolerance."""
    assert entries, f"{context}: no comparisons were made"
    bad = [f"{e['a']} vs {e['b']} {e['what']}: max_abs {e['max_abs']:.3g} > tol {e['tol']:.3g} {e.get('error', '')}"
           for e in entries if not e["ok"]]
    assert not bad, f"{context} parity breaches:\n" + "\n".join(bad)


def spec_of(run: tuple[str, str | None]):
    return get_spec(run[0], PRESET, run[1])


@functools.cache
def twins_of(task: str) -> dict:
    return load_twins(task)


_DATA: dict = {}


def data_of(spec):
    """The data of ``spec``, loaded once per data spec (the detection variants share theirs)."""
    key = (spec.task, spec.data)
    if key not in _DATA:
        _DATA[key] = D.load(spec)
    return _DATA[key]


def postprocessing_runs() -> list[tuple[str, str | None]]:
    """The runs whose twins post-process their outputs (L5)."""
    return [run for run in RUNS if hasattr(twins_of(run[0])["torch"].task, "postprocess")]


@functools.cache
def trained_weights(task: str, variant: str | None) -> dict:
    """A trained model for L5, once per session: canonical weights after the model's RECIPES ``steps`` torch
    SGD steps (constant rate, batches of ``batch`` from the shared batch plan) from the shared
    initialisation, checked to have cut the loss below ``max_loss_ratio`` of its start."""
    spec, twins = spec_of((task, variant)), twins_of(task)
    batch, steps, max_loss_ratio = RECIPES.get((task, variant), DEFAULT_RECIPE)
    split = data_of(spec).train
    models, _ = same_init(twins, spec, "torch", 0)
    train = dataclasses.replace(spec.train, schedule="constant")
    epochs = -(-steps * batch // len(split))
    batches = [idx for epoch in D.batch_plan(len(split), batch, epochs, 0) for idx in epoch][:steps]
    losses = twins["torch"].task.train_steps(models["torch"], spec, split.images, split.targets, batches, train)
    assert losses[-1] < max_loss_ratio * losses[0], losses
    return twins["torch"].bridge.export_weights(models["torch"])


class TwinParityMixin:
    """Each test runs once per model of RUNS (``run``: (task, variant)); L5 once per post-processing one."""

    def pytest_generate_tests(self, metafunc):
        runs = postprocessing_runs() if metafunc.function.__name__ == "test_postprocessed_outputs" else RUNS
        metafunc.parametrize("run", runs, ids=[run_name(*run) for run in runs])

    def _check(self, run, level: str) -> list[dict]:
        entries = run_parity(run[0], PRESET, (level,), variant=run[1])
        assert_all_ok(entries, f"{run_name(*run)} {level}")
        return entries

    def test_forward_both_ways(self, run, twins, data):
        entries = self._check(run, "forward")
        pairs = {("torch", "tensorflow"), ("tensorflow", "torch")}
        assert {(e["a"], e["b"]) for e in entries} == pairs
        # Every output and feature map of predict, each way: the spec's outputs and at least one feature map.
        spec, task = spec_of(run), twins["torch"].task
        keys = set(task.predict(task.build_model(spec), data.test.images[:1], with_features=True))
        assert keys >= set(spec.output_keys) and "features.0" in keys, sorted(keys)
        for pair in pairs:
            assert {e["what"] for e in entries if (e["a"], e["b"]) == pair} == {f"forward/{k}" for k in keys}, pair

    def test_loss_and_gradients(self, run, twins):
        entries = self._check(run, "gradients")
        assert "loss/loss" in {e["what"] for e in entries}
        grads = {e["what"].removeprefix("gradients/") for e in entries if e["what"].startswith("gradients/")}
        params = {k for k, _ in twins["torch"].task.build_model(spec_of(run)).named_parameters()}
        assert grads and grads == params, sorted(grads ^ params)   # every parameter of the model, no other

    def test_training_trajectory(self, run):
        entries = self._check(run, "training")
        # The spec's number of steps (tolerances.training_steps; small where a loss is discontinuous).
        steps = spec_of(run).tolerances.training_steps
        assert entries[0]["what"].startswith("training/loss@") and entries[0]["what"].endswith(f"of{steps}")

    @pytest.mark.export
    def test_onnx_exports(self, run, twins):
        entries = self._check(run, "onnx")
        pairs = {(e["a"], e["b"]) for e in entries}
        assert ("onnxruntime-from-torch", "onnxruntime-from-tensorflow") in pairs
        assert ("torch", "onnxruntime-from-torch") in pairs and ("tensorflow", "onnxruntime-from-tensorflow") in pairs
        # The whole model's outputs, unless the spec has an export_limit: then the part its export_view names.
        spec, task = spec_of(run), twins["torch"].task
        keys = tuple(task.export_view(task.build_model(spec), spec)[1] if hasattr(task, "export_view")
                     else spec.output_keys)
        assert (keys != tuple(spec.output_keys)) == bool(getattr(spec, "export_limit", None)), keys
        assert {e["what"] for e in entries} == {f"onnx/{k}" for k in keys}

    def test_postprocessed_outputs(self, run, twins, data, trained):
        """L5: both twins' post-processed outputs of the same trained weights."""
        entries = postprocess_parity(spec_of(run), twins, data.test.images[:L5_IMAGES], trained)
        assert_all_ok(entries, f"{run_name(*run)} postprocess")
