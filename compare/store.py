"""Run history: every report appended to a local SQLite file beside the reports."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    started TEXT NOT NULL,
    profile TEXT NOT NULL,
    out_dir TEXT NOT NULL,
    tasks TEXT NOT NULL,
    status TEXT NOT NULL,
    parity_ok INTEGER NOT NULL,
    parity_total INTEGER NOT NULL,
    summary TEXT NOT NULL,
    results TEXT NOT NULL
)
"""


class StoreError(ValueError):
    """The history file is not a TwinVision history database; it is never overwritten."""


def _connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db)
    try:
        conn.execute(SCHEMA)
    except sqlite3.DatabaseError as err:
        conn.close()
        raise StoreError(f"history store {str(db)!r} is not a TwinVision history database ({err}); it was left "
                         f"as it is: move it away or pass another --store") from None
    return conn


def key_figures(results: dict) -> dict:
    """Per task: status, parity breaches, fastest backend at batch 1, the primary metric and each framework's
    quality."""
    from shared.metrics import primary_metric

    out = {}
    for name, task in results.get("tasks", {}).items():
        b1 = [r for r in task.get("speed", []) if r["batch"] == 1]
        fastest = min(b1, key=lambda r: r["p50_ms"]) if b1 else None
        out[name] = {
            "status": task.get("status"),
            "parity_breaches": sum(not e["ok"] for e in task.get("parity", [])),
            "fastest_b1": f"{fastest['backend']} {fastest['p50_ms']:.3g} ms" if fastest else None,
            "metric": primary_metric(task["task"]) if task.get("task") else "accuracy",
            "quality": {fw: task.get("quality", {}).get(fw) for fw in ("torch", "tensorflow")},
        }
    return out


def append(db: str | Path, results: dict, out_dir: str | Path) -> None:
    db = Path(db)
    db.parent.mkdir(parents=True, exist_ok=True)
    parity = [e for t in results.get("tasks", {}).values() for e in t.get("parity", [])]
    status = "ok" if all(t.get("status") == "ok" for t in results.get("tasks", {}).values()) else "failed"
    with _connect(db) as conn:
        conn.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
            results["run"]["id"], results["run"]["started"], results["run"]["profile"], str(out_dir),
            ",".join(results.get("tasks", {})), status, sum(e["ok"] for e in parity), len(parity),
            json.dumps(key_figures(results)), json.dumps(results)))


def runs(db: str | Path, limit: int = 20) -> list[dict]:
    db = Path(db)
    if not db.exists():
        return []
    with _connect(db) as conn:
        rows = conn.execute("SELECT id, started, profile, out_dir, tasks, status, parity_ok, parity_total, summary "
                            "FROM runs ORDER BY started DESC LIMIT ?", (limit,)).fetchall()
    keys = ("id", "started", "profile", "out_dir", "tasks", "status", "parity_ok", "parity_total", "summary")
    return [{**dict(zip(keys, r)), "summary": json.loads(r[-1])} for r in rows]


def results_of(db: str | Path, run_id: str) -> dict | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT results FROM runs WHERE id = ?", (run_id,)).fetchone()
    return json.loads(row[0]) if row else None
