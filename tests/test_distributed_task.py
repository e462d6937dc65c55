"""The `distributed` task (compare/tasks/distributed.py): a study-only task on the classification model, and
how its studies turn jobs into tables and verdicts. The jobs themselves (real processes on loopback) are
tested in tests/test_data_parallel.py; here they are canned, so the verdict rules are checked on figures
chosen to hit each branch. The whole task runs in the quick report of `make test-all` (slow test below)."""

from __future__ import annotations

import numpy as np
import pytest

from compare.claims import NOT_MEASURABLE
from compare.pipeline import planned_steps
from compare.studies import MIXED, REFUTED, SUPPORTED, StudyContext
from compare.tasks import distributed as T
from compare.tasks import plugin
from shared.specs import TASKS, get_spec, twin_task


def test_a_study_only_task_runs_its_data_and_studies_on_the_model_of_the_task_it_studies():
    from compare.frameworks import load_twins
    from shared.metrics import primary_metric

    assert TASKS["distributed"].studies_on == "classification" and twin_task("distributed") == "classification"
    assert twin_task("detection") == "detection"
    assert get_spec("distributed", "tiny") == get_spec("classification", "tiny")
    assert load_twins("distributed")["torch"].task.__name__ == "pytorch_impl.classification"
    assert primary_metric("distributed") == primary_metric("classification")
    steps = planned_steps("distributed", None, "quick")
    assert [s.kind for s in steps] == ["data"] + ["study"] * len(plugin("distributed").studies)
    assert [s.what for s in steps[1:]] == [f"study: {s.name}" for s in plugin("distributed").studies]


class _Cache:
    def __init__(self, folder):
        self.folder = folder

    def path(self, name):
        return self.folder / name

    def json(self, name, make):
        return make(), False


def _ctx(tmp_path, profile="quick"):
    spec = get_spec("classification", "tiny")
    return StudyContext(spec, None, {}, {}, _Cache(tmp_path), printer=lambda line: None, profile=profile,
                        preset="tiny")


WEIGHTS = {"w": np.array([1.0, -2.0], np.float32), "b": np.array([0.5], np.float32)}


def _canned(monkeypatch, tmp_path, rates: dict, shift: dict | None = None):
    """Jobs whose images/s are ``rates[(framework, workers)]`` and whose weights are WEIGHTS moved by
    ``shift[(framework, workers)]`` (relative); the one-process reference holds WEIGHTS."""
    from shared.weights import save_file

    shift = shift or {}

    def job(ctx, fw, workers, steps, batch, preset, kill_at=None, every=0, **kw):
        path = tmp_path / f"{fw}-{workers}-{kill_at}.safetensors"
        save_file({k: v * (1 + shift.get((fw, workers), 0.0)) for k, v in WEIGHTS.items()}, path)
        out = {"weights": str(path), "images_per_s": rates[fw, workers], "first_step_seconds": 0.1,
               "job_seconds": 5.0 + (2.0 if kill_at else 0.0), "losses": [1.0, 0.5], "resumes": []}
        if kill_at:
            out.update(killed_at=kill_at, resumes=[{"from_step": kill_at - 1, "lost_steps": 1, "lost_seconds": 0.1}])
        return out

    monkeypatch.setattr(T, "_job", job)
    monkeypatch.setattr(T, "_one_process", lambda ctx, fw, preset, steps, batch, nudge=0.0: {
        "weights": {k: v * (1 + nudge) for k, v in WEIGHTS.items()}, "losses": [1.0, 0.5]})


def test_equivalence_holds_within_the_bound_and_fails_beyond_it(monkeypatch, tmp_path):
    _canned(monkeypatch, tmp_path, {(fw, w): 100.0 for fw in ("torch", "tensorflow") for w in (1, 2)},
            {("torch", 2): 2e-6, ("tensorflow", 2): 4e-6})
    study = T.equivalence_study(_ctx(tmp_path))
    assert [(r["framework"], r["workers"]) for r in study["rows"]] == [
        ("torch", 1), ("torch", 2), ("torch", 1), ("tensorflow", 1), ("tensorflow", 2), ("tensorflow", 1),
        ("torch vs tensorflow", 2)]
    # float32 weights: 1 + 2e-6 is stored to about 6e-8
    assert study["rows"][1]["max_weight_diff"] == pytest.approx(2e-6, rel=0.05) and study["rows"][1]["ok"]
    yardstick = study["rows"][2]
    assert "nudged by 1e-07" in yardstick["compared_with"] and yardstick["ok"] is None
    assert yardstick["max_weight_diff"] == pytest.approx(T.NUDGE, rel=0.5)
    assert study["verdicts"][0]["verdict"] == SUPPORTED
    assert study["plot"] is None  # the drift plot is the standard model's (standard profile)
    # the checks `twinvision check` gates: each framework's 1 and 2 workers, and the frameworks' 2-worker jobs
    assert [(e["a"], e["ok"]) for e in study["parity"]] == [
        ("torch, 1 workers", True), ("torch, 2 workers", True), ("tensorflow, 1 workers", True),
        ("tensorflow, 2 workers", True), ("torch", True)]

    _canned(monkeypatch, tmp_path, {(fw, w): 100.0 for fw in ("torch", "tensorflow") for w in (1, 2)},
            {("torch", 2): 1e-3})
    study = T.equivalence_study(_ctx(tmp_path))
    assert not study["rows"][1]["ok"] and study["verdicts"][0]["verdict"] == REFUTED
    assert not study["parity"][1]["ok"]  # and the CI gate fails on it


@pytest.mark.parametrize("rates, faster, scales", [
    ({("torch", 1): 100, ("torch", 2): 50, ("tensorflow", 1): 80, ("tensorflow", 2): 30}, REFUTED, REFUTED),
    ({("torch", 1): 100, ("torch", 2): 190, ("tensorflow", 1): 80, ("tensorflow", 2): 150}, SUPPORTED, SUPPORTED),
    ({("torch", 1): 100, ("torch", 2): 190, ("tensorflow", 1): 80, ("tensorflow", 2): 40}, MIXED, MIXED),
    ({("torch", 1): 100, ("torch", 2): 105, ("tensorflow", 1): 80, ("tensorflow", 2): 82}, MIXED, SUPPORTED),
])
def test_scaling_verdicts_count_a_change_only_beyond_the_margin(monkeypatch, tmp_path, rates, faster, scales):
    _canned(monkeypatch, tmp_path, rates)
    study = T.scaling_study(_ctx(tmp_path))
    assert [r["speedup"] for r in study["rows"]] == pytest.approx(
        [1.0, rates["torch", 2] / rates["torch", 1], 1.0, rates["tensorflow", 2] / rates["tensorflow", 1]])
    assert [v["verdict"] for v in study["verdicts"]] == [faster, scales]
    assert study["plot"]["series"]["torch"] == [rates["torch", 1], rates["torch", 2]]


def test_fault_tolerance_is_mixed_when_the_job_recovers_and_refuted_when_it_does_not(monkeypatch, tmp_path):
    _canned(monkeypatch, tmp_path, {(fw, 2): 100.0 for fw in ("torch", "tensorflow")})
    study = T.fault_study(_ctx(tmp_path))
    plan = T.PLANS["quick"]
    for row in study["rows"]:
        assert plan.every + 1 <= row["killed_after_step"] <= plan.steps - 2
        assert row["lost_steps"] == 1 and row["restart_s"] == pytest.approx(2.0) and row["ok"]
    assert study["verdicts"][0]["verdict"] == MIXED  # recovers, but restarts every worker and redoes steps


def test_convergence_verdict_comes_from_the_spread_of_the_seeds():
    labels = ["1 worker", "2 workers, same rate", "2 workers, rate x2"]
    same = {(fw, label): [0.90, 0.91, 0.92] for fw in ("torch", "tensorflow") for label in labels}
    assert T._convergence_verdict(same, labels, 3)["verdict"] == REFUTED  # no gain beyond the noise
    better = {**same, **{(fw, labels[2]): [0.96, 0.97, 0.98] for fw in ("torch", "tensorflow")}}
    assert T._convergence_verdict(better, labels, 3)["verdict"] == SUPPORTED
    mixed = {**better, ("torch", labels[1]): [0.60, 0.61, 0.62]}
    assert T._convergence_verdict(mixed, labels, 3)["verdict"] == MIXED
    noisy = {**same, **{(fw, labels[2]): [0.80, 0.99, 0.95] for fw in ("torch", "tensorflow")}}
    assert T._convergence_verdict(noisy, labels, 3)["verdict"] == REFUTED  # +0.003 within a noise of ~0.1
    one = {k: v[:1] for k, v in better.items()}
    assert T._convergence_verdict(one, labels, 1)["verdict"] == NOT_MEASURABLE


def test_claims_read_the_studies_and_say_why_when_they_cannot():
    claims = {c[0]: c for c in plugin("distributed").claims}
    assert {"distributed-synchronised", "distributed-faster", "distributed-scales", "distributed-capacity",
            "distributed-fault-tolerance", "distributed-convergence", "gpu-training-faster",
            "gpu-operations-limit"} == set(claims)
    assert {a for c in claims.values() for a in c[1].split(", ")} == {"12", "14", "29"}
    verdict, evidence = claims["distributed-faster"][3]({"tasks": {}}, {}, {})
    assert verdict == NOT_MEASURABLE and "not in this run" in evidence[0]
    results = {"tasks": {"distributed": {"studies": [{"name": "scaling", "verdicts": [
        {"claim": "a", "verdict": REFUTED, "evidence": "torch 0.5x; tensorflow 0.4x"},
        {"claim": "b", "verdict": MIXED, "evidence": "c"}]}]}}}
    assert claims["distributed-faster"][3](results, {}, {}) == (REFUTED, ["torch 0.5x", "tensorflow 0.4x"])
    assert claims["distributed-scales"][3](results, {}, {}) == (MIXED, ["c"])
    assert claims["distributed-convergence"][3](results, {}, {})[0] == NOT_MEASURABLE
    assert "data-parallel" in claims["distributed-capacity"][3](results, {}, {})[1][0]


def test_the_gpu_study_says_not_measurable_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has a GPU: the study measures it (gpu-marked test)")
    study = T.gpu_study(_ctx(tmp_path))
    assert {r["note"] for r in study["rows"]} == {"not measurable on this host: no CUDA GPU"}
    assert study["verdicts"][0]["verdict"] == NOT_MEASURABLE


@pytest.mark.gpu
def test_the_gpu_study_times_both_frameworks_on_cuda(tmp_path):
    """On a CUDA machine: the one-worker job on the GPU beside the CPU's, for both frameworks."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU; none on this machine")
    from compare.cache import TaskCache
    from compare.frameworks import load_twins

    spec = get_spec("classification", "tiny")
    ctx = StudyContext(spec, None, load_twins("classification"), {}, TaskCache(tmp_path, "distributed", "tiny", spec),
                       profile="quick", preset="tiny")
    study = T.gpu_study(ctx)
    assert [r["framework"] for r in study["rows"]] == ["torch", "tensorflow"]
    assert all(r["images_per_s"] > 0 for r in study["rows"])


@pytest.mark.slow  # about 90 s: every job of the quick profile (make test-all)
def test_the_quick_report_of_the_distributed_task(tmp_path):
    from compare.check import problems, validate
    from compare.report import run_report

    results = run_report(["distributed"], "quick", tmp_path / "out", tmp_path / "cache", printer=lambda line: None)
    validate(results)
    task = results["tasks"]["distributed"]
    assert task["status"] == "ok", task["errors"]
    assert [s["name"] for s in task["studies"]] == [s.name for s in plugin("distributed").studies]
    assert not problems(results)
    verdicts = {c["id"]: c["verdict"] for c in results["claims"]}
    assert verdicts["distributed-synchronised"] == SUPPORTED
    html = (tmp_path / "out" / "index.html").read_text()
    assert "study-distributed-convergence" in html and "A study-only task" in html
