"""The report's plots, drawn with matplotlib as SVG (embedded in the HTML, files beside the Markdown)."""

from __future__ import annotations

import io
import textwrap

import numpy as np
from matplotlib.patches import Patch

COLORS = {"torch": "#ee4c2c", "tensorflow": "#ff8f00"}
FAMILY = {"torch": "#ee4c2c", "torch-compile": "#b3341d", "tensorflow-eager": "#ffc46b", "tensorflow": "#ff8f00",
          "tensorflow-xla": "#c66f00", "onnxruntime-from-torch": "#4c72b0", "onnxruntime-from-tensorflow": "#7aa6d6",
          "tflite-fp32": "#55a868"}


def _svg(fig) -> str:
    """SVG text with its text kept as text (svg.fonttype none); each axes' title and axis labels get ids
    (``axN-title``, ``axN-xlabel``, ``axN-ylabel``) so that a reader, or the browser test, can find them."""
    import matplotlib.pyplot as plt

    for i, ax in enumerate(fig.axes):
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                _plain_log_ticks(axis)
        for part, text in (("title", ax.title), ("xlabel", ax.xaxis.label), ("ylabel", ax.yaxis.label)):
            if text.get_text():
                text.set_gid(f"ax{i}-{part}")
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _plain_log_ticks(axis) -> None:
    """Ticks of a log axis at the powers of ten, or at 1, 2 and 5 per decade when the view holds fewer
    than three powers, or at every digit when it holds fewer than two of those, or at evenly spaced round
    values in a view narrower still; labelled as plain numbers ("0.3", "20"), no minor labels. Matplotlib's default labels the
    minor ticks of a narrow view in scientific notation ("3 x 10^-1"), long labels that print over each
    other once the data span less than a decade."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

    lo, hi = sorted(axis.get_view_interval())
    if not (lo > 0 and np.isfinite(hi)):
        return
    decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    ticks = []
    for subs, enough in (((1,), 3), ((1, 2, 5), 2), (tuple(range(1, 10)), 0)):
        ticks = [m * 10.0 ** e for e in decades for m in subs if lo <= m * 10.0 ** e <= hi]
        if len(ticks) >= enough:
            break
    if len(ticks) < 2:  # a view narrower than a digit's step: evenly spaced round values, nearly even on a log axis
        ticks = [t for t in MaxNLocator(nbins=4).tick_values(lo, hi) if lo <= t <= hi]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _figure(width: float = 7.5, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "svg.fonttype": "none", "axes.spines.top": False,
                         "axes.spines.right": False})
    return plt.subplots(figsize=(width, height))


BATCH_SHADES = ("#9fb8d9", "#2b59c3", "#16306b")


def latency(speed: list[dict]) -> str:
    """p50 latency per backend at each batch size (log scale), p90 as the whisker; horizontal bars, so that
    every backend's name reads level and none overlaps its neighbour."""
    backends = list(dict.fromkeys(r["backend"] for r in speed))
    batches = sorted({r["batch"] for r in speed})
    fig, ax = _figure(width=7.0, height=1.0 + 0.22 * len(backends) * max(len(batches), 1))
    height = 0.8 / max(len(batches), 1)
    for i, batch in enumerate(batches):
        rows = {r["backend"]: r for r in speed if r["batch"] == batch}
        p50 = [rows[b]["p50_ms"] if b in rows else np.nan for b in backends]
        p90 = [rows[b]["p90_ms"] if b in rows else np.nan for b in backends]
        y = np.arange(len(backends)) + i * height
        ax.barh(y, p50, height, label=f"batch {batch}", color=BATCH_SHADES[i % len(BATCH_SHADES)],
                edgecolor="black", linewidth=0.4)
        ax.errorbar(p50, y, xerr=[np.zeros(len(p50)), np.subtract(p90, p50)], fmt="none", ecolor="black",
                    elinewidth=0.7, capsize=2)
    ax.set_xscale("log")
    ax.set_xlabel("latency per call, ms (log scale); bar: p50, whisker: p90")
    ax.set_ylabel("backend")
    ax.set_yticks(np.arange(len(backends)) + height * (len(batches) - 1) / 2, backends)
    ax.invert_yaxis()
    ax.legend(frameon=False, loc="lower right")
    ax.set_title("Inference latency per backend and batch size")
    return _svg(fig)


def peak_fraction(speed: list[dict], peak_gflops: float) -> str:
    """Achieved GFLOP/s of each float32 backend at its largest batch against the matmul reference rate."""
    batch = max(r["batch"] for r in speed)
    rows = sorted((r for r in speed if r.get("gflops") and r["batch"] == batch and r["backend"] in FAMILY),
                  key=lambda r: -r["gflops"])
    fig, ax = _figure(width=7.0, height=0.9 + 0.28 * len(rows))
    values = [r["gflops"] / peak_gflops for r in rows]
    ax.barh([r["backend"] for r in rows], values, color=[FAMILY[r["backend"]] for r in rows])
    for y, (r, v) in enumerate(zip(rows, values)):
        ax.text(v, y, f" {v:.2f} ({r['gflops']:.0f} GFLOP/s)", va="center", fontsize=8)
    ax.axvline(1.0, color="black", linewidth=0.6, linestyle=":")
    ax.set_xlim(0, max([1.0, *values]) * 1.35)
    ax.set_xlabel(f"fraction of the fp32 matmul rate ({peak_gflops:.0f} GFLOP/s, torch.mm p50, same threads)")
    ax.set_ylabel("backend")
    ax.invert_yaxis()
    ax.set_title(f"Achieved compute at batch {batch}: model FLOPs / p50 against the matmul rate")
    return _svg(fig)


def sizes(size_rows: list[dict]) -> str:
    fig, ax = _figure(height=0.9 + 0.26 * len(size_rows))
    names = [r["artifact"] for r in size_rows]
    kb = [r["bytes"] / 1024 for r in size_rows]
    ax.barh(names, kb, color=[COLORS.get(r.get("framework"), "#888") for r in size_rows])
    for y, v in enumerate(kb):
        ax.text(v, y, f" {v:,.0f} KB", va="center", fontsize=8)
    ax.set_xlim(0, max(kb) * 1.3)
    ax.set_xlabel("size on disk, KB")
    ax.set_ylabel("artifact")
    ax.invert_yaxis()
    ax.legend(handles=[Patch(color=c, label=fw) for fw, c in COLORS.items()], frameon=False, title="source")
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
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            if not np.isnan(matrix[i, j]):
                ax.text(j, i, f"{matrix[i, j]:.1f}", ha="center", va="center", fontsize=7, color="white")
    fig.colorbar(im, ax=ax, label="log10(max |a - b| / max |a|); tolerance is -5")
    ax.set_xlabel("backend b")
    ax.set_ylabel("backend a")
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


MARKERS = "ovD^<>ph*Xs"


def quantization_tradeoff(rows: list[dict]) -> str:
    """The task metric against bytes on disk and against batch-32 latency: each quantized variant a marker of
    its own (named in the legend, no labels on the points, which overlap), colour by framework, and each
    fp32 source as a hollow square."""
    metric = rows[0].get("metric", "accuracy") if rows else "accuracy"
    _figure()  # style settings
    import matplotlib.pyplot as plt

    plt.close("all")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    sources: dict[str, tuple] = {}
    for i, r in enumerate(rows):
        if r.get("quality") is None:
            continue
        style = {"color": COLORS.get(r["framework"], "#888"), "marker": MARKERS[i % len(MARKERS)],
                 "edgecolor": "black", "linewidth": 0.4, "zorder": 3, "s": 40}
        if r.get("bytes"):
            ax1.scatter([r["bytes"] / 1024], [r["quality"]], label=f"{r['variant']} ({r['framework']})", **style)
        if r.get("p50_ms_b32"):
            ax2.scatter([r["p50_ms_b32"]], [r["quality"]], **style)
        if r.get("fp32_quality") is not None:
            fp32_ms = r["p50_ms_b32"] / r["speedup_b32"] if r.get("p50_ms_b32") and r.get("speedup_b32") else None
            sources[r["fp32_backend"]] = (r.get("fp32_bytes"), fp32_ms, r["fp32_quality"], r["framework"])
    for name, (kb, ms, quality, framework) in sources.items():
        style = {"marker": "s", "facecolor": "white", "edgecolor": COLORS.get(framework, "#888"), "zorder": 2, "s": 50}
        if kb:
            ax1.scatter([kb / 1024], [quality], **style)
        if ms:
            ax2.scatter([ms], [quality], **style)
    for ax, label in ((ax1, "size on disk, KB (log scale)"), (ax2, "p50 latency at batch 32, ms (log scale)")):
        ax.set_xscale("log")
        ax.margins(x=0.15, y=0.2)
        ax.set_xlabel(label)
        ax.set_ylabel(f"test {metric}")
        ax.grid(alpha=0.3)
    ax1.set_title(f"{metric} against size (hollow squares: fp32 sources)")
    ax2.set_title(f"{metric} against latency")
    fig.legend(loc="lower center", bbox_to_anchor=(0.5, -0.02), ncol=3, frameon=False, fontsize=8,
               title="quantized variant (colour: framework)")
    fig.tight_layout(rect=(0, 0.08 + 0.045 * ((len(rows) + 2) // 3), 1, 1))
    return _svg(fig)


def study_plot(plot: dict) -> str | None:
    """A study's plot (compare.studies): ``bars`` (grouped, one group per label; ``errors``, per series, draws
    error bars), ``lines`` (one line per series over the labels, ``errors`` likewise) or ``points`` (one point
    per label and series at its ``[x, y]``: a marker per label, a colour per series, named in the legend);
    None values are gaps."""
    labels, series = plot.get("labels") or [], plot.get("series") or {}
    if not labels or not series:
        return None
    if plot["kind"] == "points":
        return _points_plot(plot, labels, series)
    fig, ax = _figure(height=3.0)
    x = np.arange(len(labels))
    values = {name: np.array([np.nan if v is None else v for v in vals], dtype=float) for name, vals in series.items()}
    if plot["kind"] == "bars":
        width = 0.8 / len(values)
        errors = plot.get("errors") or {}  # per series, one spread per label (a standard deviation): error bars
        for i, (name, vals) in enumerate(values.items()):
            yerr = errors.get(name)
            ax.bar(x + i * width, vals, width, label=name, edgecolor="black", linewidth=0.4,
                   yerr=None if yerr is None else [0.0 if e is None else e for e in yerr], capsize=3)
        ax.set_xticks(x + width * (len(values) - 1) / 2, [textwrap.fill(str(label), 16) for label in labels])
    else:
        errors = plot.get("errors") or {}  # per series, one spread per label: error bars
        # "<framework> <what>" series with several whats: a colour per what, a line style per framework.
        whats = sorted({n.split(maxsplit=1)[1] for n in values if len(n.split(maxsplit=1)) == 2}, key=str)
        by_what = plot.get("style") == "what" and len(whats) > 1
        cycle = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]  # clear of the framework colours
        for name, vals in values.items():
            framework, _, what = name.partition(" ")
            if by_what:
                color, style = cycle[whats.index(what) % len(cycle)], "-" if framework == "torch" else "--"
            else:
                color, style = COLORS.get(framework, None), "--" if "erasing" in name else "-"
            yerr = errors.get(name)
            ax.errorbar(x, vals, yerr=None if yerr is None else [0.0 if e is None else e for e in yerr], marker="o",
                        label=name, color=color, linestyle=style, capsize=3)
        ax.set_xticks(x, labels)
    ax.set_ylabel(plot.get("ylabel", ""))
    if plot.get("xlabel"):
        ax.set_xlabel(plot["xlabel"])
    ax.set_title(plot.get("title", ""))
    ax.legend(frameon=False, fontsize=8)
    return _svg(fig)


def _points_plot(plot: dict, labels: list, series: dict) -> str:
    """``points``: series {name: [[x, y] or None per label]}; each point a marker of its label, coloured by its
    series (a framework's colour where the name is one), named in the legend rather than on the plot, where
    labels of nearby points would overlap."""
    fig, ax = _figure(height=3.2)
    cycle = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b"]
    for s_index, (name, points) in enumerate(series.items()):
        color = COLORS.get(name, cycle[s_index % len(cycle)])
        for i, (label, point) in enumerate(zip(labels, points)):
            if point is None or None in point:
                continue
            ax.scatter([point[0]], [point[1]], color=color, marker=MARKERS[i % len(MARKERS)], s=45, zorder=3,
                       edgecolor="black", linewidth=0.4, label=f"{label} ({name})")
    ax.margins(x=0.15, y=0.2)
    ax.grid(alpha=0.3)
    ax.set_xlabel(plot.get("xlabel", ""))
    ax.set_ylabel(plot.get("ylabel", ""))
    ax.set_title(plot.get("title", ""))
    ax.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return _svg(fig)
