"""The report's answers first: per model and overall, which framework and which deployment path wins on
inference speed (batch 1 and the largest batch timed), deployment size, training speed and quality, by how
much, on the CPU named; every figure links to its evidence lower down.

A framework "wins" a comparison only beyond the tie rule of compare.claims: timings beyond the margin and twice
their CV, sizes and training throughput beyond the margin, quality beyond ACCURACY_KEPT. Each framework is
represented by its best path: a torch-trained model through eager torch, torch.compile or ONNX Runtime, a
TensorFlow-trained one through TensorFlow, XLA, ONNX Runtime or TFLite (float32 only: int8 changes the model, so
the fastest and smallest int8 paths are named beside the winner, not counted for a framework).
"""

from __future__ import annotations

from shared.metrics import primary_metric

from .backends import QUANTIZED, SOURCE
from .claims import ACCURACY_KEPT, DEPLOYABLE, MARGIN, faster, noise_bound, speed_sources

FRAMEWORKS = ("torch", "tensorflow")
LABEL = {"torch": "PyTorch", "tensorflow": "TensorFlow", "tie": "tie"}
ASPECTS = ("inference, batch 1", "inference, large batch", "deployment size", "training speed", "quality")


def _framework(backend: str) -> str | None:
    return SOURCE.get(backend) or QUANTIZED.get(backend, (None,))[0]


def _speed(name: str, block: dict, batch: int, aspect: str) -> dict | None:
    rows = {r["backend"]: r for r in block["speed"] if r["batch"] == batch}
    best = {}
    for fw in FRAMEWORKS:
        own = [b for b in rows if SOURCE.get(b) == fw]
        if own:
            best[fw] = min(own, key=lambda b: rows[b]["p50_ms"])
    if len(best) < 2:
        return None
    point = faster(block, best["torch"], best["tensorflow"], batch)  # +1: TensorFlow's best is faster
    fastest = min(rows, key=lambda b: rows[b]["p50_ms"])
    slow, fast = sorted((rows[best[fw]]["p50_ms"] for fw in FRAMEWORKS), reverse=True)
    return {"aspect": aspect, "batch": batch,
            "torch": {"path": best["torch"], "value": rows[best["torch"]]["p50_ms"], "unit": "ms"},
            "tensorflow": {"path": best["tensorflow"], "value": rows[best["tensorflow"]]["p50_ms"], "unit": "ms"},
            "winner": {1: "tensorflow", -1: "torch", 0: "tie"}[point], "ratio": slow / fast,
            "bound": 1 + noise_bound(block, best["torch"], best["tensorflow"], batch),
            "best_path": {"path": fastest, "framework": _framework(fastest), "value": rows[fastest]["p50_ms"],
                          "unit": "ms"}}


def _size(block: dict) -> dict | None:
    sizes = {r["artifact"]: r for r in block.get("size", [])}
    best = {fw: min((a for a in names if a in sizes), key=lambda a: sizes[a]["bytes"], default=None)
            for fw, names in DEPLOYABLE.items()}
    if not all(best.values()):
        return None
    values = {fw: sizes[best[fw]]["bytes"] for fw in FRAMEWORKS}
    ratio = max(values.values()) / min(values.values())
    smallest = min(sizes.values(), key=lambda r: r["bytes"] if r["artifact"] != "safetensors" else float("inf"))
    return {"aspect": "deployment size",
            **{fw: {"path": best[fw], "value": values[fw], "unit": "B"} for fw in FRAMEWORKS},
            "winner": "tie" if ratio <= 1 + MARGIN else min(values, key=values.get), "ratio": ratio,
            "bound": 1 + MARGIN,
            "best_path": {"path": smallest["artifact"], "framework": smallest.get("framework"),
                          "value": smallest["bytes"], "unit": "B"}}


def _training(task: dict) -> dict | None:
    info = task.get("training") or {}
    values = {fw: info[fw].get("images_per_s") for fw in FRAMEWORKS if fw in info}
    if len(values) < 2 or not all(values.values()):
        return None
    ratio = max(values.values()) / min(values.values())
    return {"aspect": "training speed",
            **{fw: {"path": f"{fw} training loop", "value": values[fw], "unit": "images/s",
                    "seconds": info[fw].get("seconds"), "cached": bool(info[fw].get("cached"))}
               for fw in FRAMEWORKS},
            "winner": "tie" if ratio <= 1 + MARGIN else max(values, key=values.get), "ratio": ratio,
            "bound": 1 + MARGIN}


def _quality(name: str, task: dict) -> dict | None:
    metric = primary_metric(task.get("task") or name.split(".")[0])
    values = {fw: (task.get("quality") or {}).get(fw, {}).get(metric) for fw in FRAMEWORKS}
    if any(v is None for v in values.values()):
        return None
    diff = values["tensorflow"] - values["torch"]
    return {"aspect": "quality", "metric": metric,
            **{fw: {"path": f"{fw}-trained model", "value": values[fw], "unit": metric} for fw in FRAMEWORKS},
            "winner": "tie" if abs(diff) <= ACCURACY_KEPT else ("tensorflow" if diff > 0 else "torch"),
            "difference": diff, "bound": ACCURACY_KEPT}


def _rows(results: dict) -> list[dict]:
    rows = []
    for name, size_class, block in speed_sources(results):
        batches = sorted({r["batch"] for r in block["speed"]})
        task = results["tasks"].get(name)
        anchor = f"task-{name}" if task is not None else f"workload-{name.split('@')[0]}"
        found = [_speed(name, block, batches[0], ASPECTS[0]),
                 _speed(name, block, batches[-1], ASPECTS[1]) if len(batches) > 1 else None,
                 _size(block)]
        if task is not None:
            found += [_training(task), _quality(name, task)]
        for row in found:
            if row:
                section = {"deployment size": "size", "training speed": "training", "quality": "quality"}.get(
                    row["aspect"], "speed")
                rows.append({"scope": name, "size_class": size_class, "link": f"#{anchor}-{section}", **row})
    return rows


def _overall(rows: list[dict]) -> list[dict]:
    """Per aspect and model size class: how many models each framework wins, and how many are ties."""
    out = []
    for aspect in ASPECTS:
        for size_class in dict.fromkeys(r["size_class"] for r in rows):
            group = [r for r in rows if r["aspect"] == aspect and r["size_class"] == size_class]
            if not group:
                continue
            counts = {k: sum(r["winner"] == k for r in group) for k in (*FRAMEWORKS, "tie")}
            wins = [fw for fw in FRAMEWORKS if counts[fw]]
            # One framework ahead only where the other wins nowhere; both winning somewhere is a split.
            answer = "tie" if not wins else wins[0] if len(wins) == 1 else "split"
            paths = [r["best_path"]["path"] for r in group if r.get("best_path")]
            out.append({"aspect": aspect, "size_class": size_class, "models": len(group), "counts": counts,
                        "answer": answer, "best_paths": {p: paths.count(p) for p in dict.fromkeys(paths)}})
    return out


def summarize(results: dict) -> dict:
    """The ``summary`` block of results.json: per-model rows and the overall answer per aspect."""
    host = results.get("run", {}).get("host", {})
    rows = _rows(results)
    return {"cpu": host.get("cpu"), "isa": host.get("isa"), "threads": host.get("threads"),
            "rule": (f"a framework wins only beyond the tie rule: timings by more than {MARGIN:.0%} and twice "
                     f"their CV, sizes and training throughput by more than {MARGIN:.0%}, quality by more than "
                     f"{ACCURACY_KEPT}"),
            "rows": rows, "overall": _overall(rows)}


def _models(n: int, size_class: str) -> str:
    noun = size_class if size_class.endswith("model") else f"{size_class} model"
    return f"{n} {noun}{'s' if n != 1 else ''}"


def headline(summary: dict) -> list[str]:
    """One sentence per aspect and size class, for the top of the page and report.md."""
    lines = []
    for o in summary["overall"]:
        c, models = o["counts"], _models(o["models"], o["size_class"])
        parts = [f"{LABEL[k]} ahead on {c[k]}" if k != "tie" else f"a tie on {c[k]}" for k in (*FRAMEWORKS, "tie")
                 if c[k]]
        if o["answer"] == "tie":
            every = {1: "the", 2: "both"}.get(o["models"], f"all {o['models']}")
            verdict = f"a tie on {every} {models.split(' ', 1)[1]}"
        else:
            lead = "split" if o["answer"] == "split" else f"{LABEL[o['answer']]} ahead"
            verdict = f"{lead} ({', '.join(parts)} of {models})"
        best = ""
        if o["best_paths"]:
            path, n = max(o["best_paths"].items(), key=lambda kv: kv[1])
            noun = "smallest" if o["aspect"] == "deployment size" else "fastest"
            best = (f"; {noun} of all: {path}" + ("" if n == o["models"] else f" on {n} of {o['models']}")
                    if n > 1 or o["models"] == 1 else f"; the {noun} path differs per model")
        lines.append(f"{o['aspect'].capitalize()}: {verdict}{best}.")
    return lines
