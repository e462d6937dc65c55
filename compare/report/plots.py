"""The report's plots, drawn with matplotlib as SVG (embedded in the HTML, files beside the Markdown)."""

from __future__ import annotations

import io

import numpy as np

COLORS = {"torch": "#ee4c2c", "tensorflow": "#ff8f00"}
FAMILY = {"torch": "#ee4c2c", "torch-compile": "#b3341d", "tensorflow-eager": "#ffc46b", "tensorflow": "#ff8f00",
          "tensorflow-xla": "#c66f00", "onnxruntime-from-torch": "#4c72b0", "onnxruntime-from-tensorflow": "#7aa6d6",
          "tflite-fp32": "#55a868"}


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _figure(width: float = 7.5, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "svg.fonttype": "none", "axes.spines.top": False,
                         "axes.spines.right": False})
    return plt.subplots(figsize=(width, height))


def latency(speed: list[dict]) -> str:
    """p50 latency per backend at each batch size (log scale), p90 as the error bar."""
    backends = list(dict.fromkeys(r["backend"] for r in speed))
    batches = sorted({r["batch"] for r in speed})
    fig, ax = _figure()
    width = 0.8 / max(len(batches), 1)
    for i, batch in enumerate(batches):
        rows = {r["backend"]: r for r in speed if r["batch"] == batch}
        p50 = [rows[b]["p50_ms"] if b in rows else np.nan for b in backends]
        p90 = [rows[b]["p90_ms"] if b in rows else np.nan for b in backends]
        x = np.arange(len(backends)) + i * width
        ax.bar(x, p50, width, label=f"batch {batch}", color=[FAMILY.get(b, "#888") for b in backends],
               alpha=0.55 + 0.45 * i / max(len(batches) - 1, 1), edgecolor="black", linewidth=0.4)
        ax.errorbar(x, p50, yerr=[np.zeros(len(p50)), np.subtract(p90, p50)], fmt="none", ecolor="black",
                    elinewidth=0.7, capsize=2)
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency, ms (log)")
    ax.set_xticks(np.arange(len(backends)) + width * (len(batches) - 1) / 2, backends, rotation=30, ha="right")
    ax.legend(frameon=False)
    ax.set_title("Inference latency per backend (lighter: batch 1, darker: batch 32; bar to p90)")
    return _svg(fig)


def peak_fraction(speed: list[dict], peak_gflops: float) -> str:
    rows = [r for r in speed if r.get("gflops")]
    fig, ax = _figure(height=2.8)
    labels = [f"{r['backend']} b{r['batch']}" for r in rows]
    values = [r["gflops"] / peak_gflops for r in rows]
    ax.barh(labels, values, color=[FAMILY.get(r["backend"], "#888") for r in rows])
    ax.set_xlabel(f"achieved GFLOP/s as a fraction of the measured fp32 matmul peak ({peak_gflops:.0f} GFLOP/s)")
    ax.invert_yaxis()
    return _svg(fig)


def sizes(size_rows: list[dict]) -> str:
    fig, ax = _figure(height=2.6)
    names = [r["artifact"] for r in size_rows]
    kb = [r["bytes"] / 1024 for r in size_rows]
    ax.barh(names, kb, color=[COLORS.get(r.get("framework"), "#888") for r in size_rows])
    for y, v in enumerate(kb):
        ax.text(v, y, f" {v:,.0f} KB", va="center", fontsize=8)
    ax.set_xlabel("KB on disk")
    ax.invert_yaxis()
    ax.set_title("Deployment size per artifact")
    return _svg(fig)


def parity_heatmap(parity: list[dict]) -> str:
    """Backend x backend: log10 of the max abs difference relative to the output scale."""
    rows = [e for e in parity if e["what"].startswith("backends/")]
    names = list(dict.fromkeys([e["a"] for e in rows] + [e["b"] for e in rows]))
    matrix = np.full((len(names), len(names)), np.nan)
    for e in rows:
        i, j = names.index(e["a"]), names.index(e["b"])
        scale = e["tol"] / 1e-5 if e["tol"] else 1.0  # tol = 1e-5 x max|output|
        rel = max(e["max_abs"] / scale, 1e-12)
        matrix[i, j] = matrix[j, i] = np.log10(rel)
    fig, ax = _figure(width=6.2, height=5.0)
    im = ax.imshow(matrix, cmap="viridis", vmin=-9, vmax=-4)
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            if not np.isnan(matrix[i, j]):
                ax.text(j, i, f"{matrix[i, j]:.1f}", ha="center", va="center", fontsize=7, color="white")
    fig.colorbar(im, ax=ax, label="log10(max |a - b| / max |a|); tolerance is -5")
    ax.set_title("Parity between every pair of backends (same weights, same batch)")
    return _svg(fig)


def training_curves(training: dict, metric: str = "accuracy") -> str:
    fig, ax = _figure()
    ax2 = ax.twinx()
    split = "test"  # the split the per-epoch metric scored: detection's trainers use the validation split
    for fw, info in training.items():
        hist = info.get("history", [])
        epochs = [r["epoch"] for r in hist]
        ax.plot(epochs, [r["loss"] for r in hist], "-o", ms=3, color=COLORS.get(fw), label=f"{fw} train loss")
        split = next((s for s in ("val", "test") if hist and f"{s}_{metric}" in hist[0]), split)
        acc = [r.get(f"{split}_{metric}") for r in hist]
        if acc and all(a is not None for a in acc):
            ax2.plot(epochs, acc, "--s", ms=3, color=COLORS.get(fw), alpha=0.6, label=f"{fw} {split} {metric}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss")
    ax2.set_ylabel(f"{split} {metric}")
    ax2.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], frameon=False, fontsize=8, loc="center right")
    ax.set_title("Training curves, both frameworks on the same batches")
    return _svg(fig)


def quantization_tradeoff(rows: list[dict]) -> str:
    """The task metric against bytes on disk and against batch-32 latency, fp32 sources and quantized variants."""
    metric = rows[0].get("metric", "accuracy") if rows else "accuracy"
    _figure()  # style settings
    import matplotlib.pyplot as plt

    plt.close("all")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, x_key, fp32_key, label in ((ax1, "bytes", "fp32_bytes", "KB on disk"),
                                       (ax2, "p50_ms_b32", None, "p50 ms at batch 32")):
        for r in rows:
            x = r.get(x_key)
            if x is None or r.get("quality") is None:
                continue
            x = x / 1024 if x_key == "bytes" else x
            color = COLORS.get(r["framework"], "#888")
            ax.scatter([x], [r["quality"]], color=color, edgecolor="black", linewidth=0.4, zorder=3)
            ax.annotate(r["variant"], (x, r["quality"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
            if fp32_key and r.get(fp32_key) and r.get("fp32_quality") is not None:
                ax.scatter([r[fp32_key] / 1024], [r["fp32_quality"]], marker="s", color="white", edgecolor=color,
                           zorder=2)
        ax.set_xlabel(label)
        ax.set_ylabel(f"test {metric}")
        ax.grid(alpha=0.3)
    ax1.set_title(f"{metric} vs size (squares: fp32 source)")
    ax2.set_title(f"{metric} vs latency")
    fig.tight_layout()
    return _svg(fig)


def study_plot(plot: dict) -> str | None:
    """A study's plot (compare.studies): ``bars`` (grouped, one group per label) or ``lines`` (one line per
    series over the labels); None values are gaps."""
    labels, series = plot.get("labels") or [], plot.get("series") or {}
    if not labels or not series:
        return None
    fig, ax = _figure(height=3.0)
    x = np.arange(len(labels))
    values = {name: np.array([np.nan if v is None else v for v in vals], dtype=float) for name, vals in series.items()}
    if plot["kind"] == "bars":
        width = 0.8 / len(values)
        for i, (name, vals) in enumerate(values.items()):
            ax.bar(x + i * width, vals, width, label=name, edgecolor="black", linewidth=0.4)
        ax.set_xticks(x + width * (len(values) - 1) / 2, labels, rotation=20, ha="right")
    else:
        for name, vals in values.items():
            color = COLORS.get(name.split()[0], None)
            ax.plot(x, vals, marker="o", label=name, color=color, linestyle="--" if "erasing" in name else "-")
        ax.set_xticks(x, labels)
    ax.set_ylabel(plot.get("ylabel", ""))
    if plot.get("xlabel"):
        ax.set_xlabel(plot["xlabel"])
    ax.set_title(plot.get("title", ""))
    ax.legend(frameon=False, fontsize=8)
    return _svg(fig)
