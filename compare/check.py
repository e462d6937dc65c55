"""The CI gate: a results.json is acceptable or it is not, and the reasons are printed."""

from __future__ import annotations

import json
from pathlib import Path

SCHEMA = "twinvision.results/1"


def load_results(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"results file {str(path)!r} is a folder; expected a results.json file (the report writes "
                         f"one into its --out folder)")
    if not path.is_file():
        raise FileNotFoundError(f"results file {str(path)!r} does not exist")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"results file {str(path)!r} is not valid JSON: {err}") from None
    if results.get("schema") != SCHEMA:
        raise ValueError(f"results file {str(path)!r} has schema {results.get('schema')!r}; expected {SCHEMA!r}")
    return results


def problems(results: dict, baseline: dict | None = None, threshold: float = 0.25) -> list[str]:
    """Everything that breaks the gate: parity breaches, failed tasks / exports / backends, p50 regressions."""
    found = []
    # The reference workloads (ResNets through every backend) are gated like a task: parity, failures, p50.
    blocks = [("tasks", name, task) for name, task in results.get("tasks", {}).items()]
    blocks += [("workloads", name, block) for name, block in (results.get("workloads") or {}).items()]
    for section, name, task in blocks:
        if section == "workloads" and task.get("errors"):
            found.append(f"workload {name}: " + "; ".join(task["errors"][:3]))
        if section == "tasks" and task.get("status") != "ok":
            found.append(f"{name}: task status {task.get('status')!r}: " + "; ".join(task.get("errors", [])[:3]))
        for e in task.get("parity", []):
            if not e.get("ok"):
                found.append(f"{name}: parity breach {e['a']} vs {e['b']} {e['what']}: max_abs {e['max_abs']:.3g} "
                             f"> tol {e['tol']:.3g}")
        # "skipped": the model declares it cannot be exported whole (spec.export_limit), with the reason.
        for row in task.get("exports", []):
            if row.get("status") not in ("ok", "skipped"):
                found.append(f"{name}: export {row['artifact']} failed: {row.get('error', '')}")
        for row in task.get("backends", []):
            if row.get("status") not in ("ok", "skipped"):
                found.append(f"{name}: backend {row['name']} failed: {row.get('error', '')}")
        for row in task.get("compression", []):
            if row.get("status") == "failed":
                found.append(f"{name}: compression {row['variant']} failed: {row.get('error', '')}")
        if baseline is not None:
            before = {(r["backend"], r["batch"]): r["p50_ms"]
                      for r in (baseline.get(section) or {}).get(name, {}).get("speed", [])}
            for row in task.get("speed", []):
                old = before.get((row["backend"], row["batch"]))
                if old and row["p50_ms"] > old * (1 + threshold):
                    found.append(f"{name}: {row['backend']} batch {row['batch']} p50 {row['p50_ms']:.3g} ms is "
                                 f"{row['p50_ms'] / old - 1:+.0%} against the baseline's {old:.3g} ms "
                                 f"(threshold {threshold:.0%})")
    return found
