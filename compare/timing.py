"""The report's timing table: where each task's minutes went, against its budget.

The budgets (docs/ARCHITECTURE.md, "Time budgets") are per task on 2 CPU cores,
all of a task's runs together (its main model, its variants and their studies):
the standard profile at most 12 minutes cold (nothing cached: training and
exports to do) and 30 seconds warm (everything cached); the quick profile at
most 90 seconds. A task over budget stays in the report: the table flags the
overrun, it never hides the task.

A run's temperature is whether its cache folder existed when the report
started. This run's seconds come from the progress line's step clock; the
other temperature's, where an earlier report on this cache measured it, from
the cost book that estimates the time left (compare.progress.CostBook).
"""

from __future__ import annotations

from collections import defaultdict

from shared.specs import split_run_name

BUDGETS = {"standard": {"cold": 720.0, "warm": 30.0}, "quick": {"cold": 90.0, "warm": 90.0}}
# Shown in this order; a step kind not listed here is added after them.
STAGES = ("data", "train", "training speed", "parity", "export", "quantize", "quality", "compression", "speed",
          "study")


def _group(name: str, workloads: set[str]) -> str:
    """The table row a run belongs to: its task (``detection.yolo`` -> ``detection``), or the reference
    workloads (timed like a task, without a budget: they are not a task)."""
    return "reference workloads" if name in workloads else split_run_name(name)[0]


def timing_table(progress, book: dict, profile: str, cpu: str, temperatures: dict[str, str],
                 workloads: set[str] = frozenset()) -> dict:
    """``{"cpu", "profile", "budget", "stages", "rows"}``: one row per task (and one for the reference
    workloads) with this run's seconds per stage and in all, its temperature, the cold and warm totals
    known (this run's and the cost book's), and whether the budget was kept.

    ``progress``: the report's ``compare.progress.Progress`` after ``finish()`` (``done``: step -> seconds);
    ``book``: the cost book's {run: {temperature: {step: seconds}}} of this profile."""
    stages: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    runs: dict[str, set[str]] = defaultdict(set)
    for step, seconds in progress.done.items():
        group = _group(step.run, workloads)
        stages[group][step.kind] += seconds
        runs[group].add(step.run)
    budget = BUDGETS.get(profile)
    kinds = [k for k in STAGES if any(k in s for s in stages.values())]
    kinds += sorted({k for s in stages.values() for k in s} - set(kinds))
    rows = []
    for group, by_stage in stages.items():
        temps = {temperatures.get(run, "cold") for run in runs[group]}
        temperature = temps.pop() if len(temps) == 1 else "mixed"
        totals = {}
        for temp in ("cold", "warm"):
            known = [book.get(run, {}).get(temp) for run in sorted(runs[group])]
            totals[temp] = sum(sum(steps.values()) for steps in known) if all(known) else None
        seconds = sum(by_stage.values())
        if temperature in totals:
            totals[temperature] = seconds  # this run's own clock, whatever the book held before
        row = {"task": group, "runs": sorted(runs[group]), "temperature": temperature, "seconds": seconds,
               "stages": {k: by_stage.get(k, 0.0) for k in kinds}, "cold_seconds": totals["cold"],
               "warm_seconds": totals["warm"]}
        if budget and group != "reference workloads":
            row["budget"] = dict(budget)
            row["within_budget"] = {t: (totals[t] <= budget[t] if totals[t] is not None else None)
                                    for t in ("cold", "warm")}
        rows.append(row)
    return {"cpu": cpu, "profile": profile, "budget": budget, "stages": kinds, "rows": rows}


__all__ = ["BUDGETS", "STAGES", "timing_table"]
