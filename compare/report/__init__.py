"""``twinvision report``: every task through the harness, into results.json, report.md and index.html.

Results and pages are written after each run (atomically): a user reads the
first task's results minutes after starting, the page names what is still
running and the time it should take, and an interrupted run leaves a valid
report of what it finished; trained models and exports come from the cache on
the next run.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path
from typing import Callable

from shared.specs import TASKS, ready_tasks, run_name
from shared.weights import write_atomic

from .. import backends as B
from .. import claims, codepair, store, summary
from ..env import run_info
from ..pipeline import PROFILES, TaskRun, planned_steps, run_cache
from ..progress import CostBook, Progress
from ..timing import timing_table
from ..workloads import profile_workloads, run_workload, workload_cache
from ..workloads import planned_steps as workload_steps
from ..workloads import run_name as workload_run
from ..speed import matmul_peak_gflops
from .render import render

SCHEMA = "twinvision.results/1"


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def training_device(device: str) -> str:
    """``cpu``, ``cuda`` or ``auto`` (cuda when there is one) -> cpu or cuda; a clear error for cuda without one."""
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"unknown device {device!r}; expected one of ['cpu', 'cuda', 'auto']")
    if device == "auto":
        return "cuda" if gpu_name() else "cpu"
    if device == "cuda" and not gpu_name():
        raise ValueError("--device cuda: no CUDA GPU on this machine (torch.cuda.is_available() is False); use "
                         "--device cpu or auto")
    return device


def code_evidence() -> dict:
    evidence = codepair.summary()
    by_path = {m["path"]: m for m in evidence["modules"]}
    evidence["trainer_loc"] = codepair.function_loc("training.py", "Trainer")
    evidence["training_loc"] = by_path.get("training.py", {}).get("loc", {})
    evidence["export_loc"] = by_path.get("export.py", {}).get("loc", {})
    return evidence


def run_report(tasks: list[str] | None = None, profile: str = "standard", out: str | Path = "reports/latest",
               cache: str | Path = ".twinvision/cache", threads: int | None = None,
               printer: Callable[[str], None] = print, device: str = "cpu") -> dict:
    """Run the report; returns the results dict (also written to ``out``). ``device``: where each framework
    trains its models (cpu, cuda or auto); exports and every inference backend run on the CPU."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = tasks or ready_tasks()
    threads = threads or os.cpu_count() or 1
    B.set_threads(threads)
    results = {"schema": SCHEMA, "run": run_info(profile, threads), "tasks": {}, "claims": []}
    results["run"]["threads"] = {"torch": threads, "tensorflow_intra_op": threads, "tensorflow_inter_op": 1,
                                 "onnxruntime_intra_op": threads, "tflite": threads}
    results["run"]["gpu"] = gpu_name()
    device = training_device(device)
    results["run"]["training_device"] = device
    results["run"]["matmul_peak"] = matmul_peak_gflops(threads)
    printer(f"twinvision report: {', '.join(tasks)} ({profile} profile, {threads} threads, fp32 matmul rate "
            f"{results['run']['matmul_peak']['gflops']:.0f} GFLOP/s)")
    runs = [(task, variant) for task in tasks for variant in (None, *TASKS[task].variants)]
    workloads = profile_workloads(profile)
    preset, budget = PROFILES[profile][0], PROFILES[profile][1]
    # Which runs start cold (nothing cached: training and exports to do), for the time-left estimate.
    temperatures = {run_name(t, v): "cold" if run_cache(cache, run_name(t, v), preset).fresh else "warm"
                    for t, v in runs}
    temperatures.update({workload_run(w): "cold" if workload_cache(cache, w).fresh else "warm" for w in workloads})
    costs = CostBook(cache, profile)
    progress = Progress([s for t, v in runs for s in planned_steps(t, v, profile)]
                        + [s for w in workloads for s in workload_steps(w)], costs, temperatures, printer=printer)
    started = time.perf_counter()
    code = code_evidence()
    pending = [run_name(t, v) for t, v in runs] + [workload_run(w) for w in workloads]

    def publish() -> None:
        """results.json, index.html and report.md of what has finished, written atomically after every run:
        a user reads the first task minutes after starting, and a killed run leaves a valid report."""
        results["timing"] = timing_table(progress, costs.runs(), profile, results["run"]["host"]["cpu"],
                                         temperatures, {workload_run(w) for w in workloads})
        results["code"] = code
        results["claims"] = claims.grade(results, code, {"gpu": results["run"]["gpu"]})
        results["summary"] = summary.summarize(results)
        results["run"]["seconds"] = time.perf_counter() - started
        results["run"]["pending"] = list(pending)
        results["run"]["seconds_left"] = progress.left()[0] if pending else 0.0
        write_atomic(out / "results.json", json.dumps(results, indent=1, default=str))
        render(results, out)

    for task, variant in runs:
        name = run_name(task, variant)
        try:
            results["tasks"][name] = TaskRun(task, profile, Path(cache), threads, progress, variant, device).run()
        except Exception as err:  # noqa: BLE001 - one failing task is recorded, the others still run
            results["tasks"][name] = {"status": "failed", "errors": [f"{type(err).__name__}: {err}"],
                                      "tracebacks": [traceback.format_exc(limit=8)], "parity": [], "speed": [],
                                      "size": [], "quality": {}, "task": task, "variant": variant}
        pending.remove(name)
        if pending:
            publish()
    for workload in workloads:
        try:
            results.setdefault("workloads", {})[workload] = run_workload(workload, cache, threads, budget, progress)
        except Exception as err:  # noqa: BLE001 - recorded; the report still completes
            results.setdefault("workloads", {})[workload] = {"model": workload, "errors": [
                f"{type(err).__name__}: {err}"], "tracebacks": [traceback.format_exc(limit=8)], "speed": [],
                "backends": [], "parity": [], "size": []}
        pending.remove(workload_run(workload))
        if pending:
            publish()
    progress.finish()
    publish()  # complete: the last step's time, now closed, in the timing table
    try:
        store.append(out.parent / "history.sqlite", results, out)
    except store.StoreError as err:  # the report is written; a damaged history file is left for the user
        printer(f"history not recorded: {err}")
    printer(f"wrote {out / 'index.html'}, {out / 'report.md'}, {out / 'results.json'} "
            f"in {results['run']['seconds'] / 60:.1f} min")
    return results
