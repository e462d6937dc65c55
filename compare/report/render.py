"""Results -> index.html (self-contained: plots inlined as SVG, no network) and report.md."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from shared.metrics import primary_metric
from shared.weights import write_atomic

from shared.specs import TASKS

from .. import guide, summary, training_speed
from ..codepair import module_pairs
from ..parity import summarize
from ..size import human
from . import plots

TEMPLATES = Path(__file__).resolve().parent / "templates"
TIMING_PROTOCOL = ("Same thread settings for every backend; one warm-up rule for all (until two consecutive windows "
                   "agree within 5%); each sample times enough back-to-back calls to last at least 10 ms; samples "
                   "are taken until the last few have a CV of at most 0.05, and a figure that never got there is "
                   "marked noisy with its CV.")
VERDICT_CLASS = {"supported": "ok", "refuted": "bad", "mixed": "mixed", "tie": "tie", "not measurable here": "na"}


def inline_svg(svg: str, prefix: str) -> str:
    """matplotlib's SVG ready to sit in the page: no XML prolog or metadata, every id (and every reference to
    one) prefixed, so that two plots never share an id."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)  # RDF boilerplate naming matplotlib's site
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = re.sub(r'(href=)"#([^"]+)"', rf'\1"#{prefix}-\2"', svg)
    return re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", svg)


def task_plots(task: dict, peak: float, metric: str = "accuracy") -> dict[str, str]:
    """SVG text of every plot a task section shows (missing inputs: no plot)."""
    out = {}
    draw = {
        "latency": lambda: plots.latency(task["speed"]) if task.get("speed") else None,
        "peak": lambda: plots.peak_fraction(task["speed"], peak) if task.get("speed") and peak else None,
        "size": lambda: plots.sizes(task["size"]) if task.get("size") else None,
        "parity": lambda: plots.parity_heatmap(task["parity"])
        if any(e["what"].startswith("backends/") for e in task.get("parity", [])) else None,
        "training": lambda: plots.training_curves(task["training"], metric) if task.get("training")
        else None,
        "quantization": lambda: plots.quantization_tradeoff(task["quantization"]) if task.get("quantization")
        else None,
    }
    for study in task.get("studies", []):
        draw[f"study-{study['name']}"] = lambda study=study: plots.study_plot(study["plot"]) if study.get("plot") \
            else None
    for name, make in draw.items():
        svg = make()
        if svg:
            out[name] = svg
    return out


def study_images(task: dict, name: str, out: Path) -> dict[str, dict[str, str]]:
    """Per study, its PNG images copied beside the report (``plots/``) and inlined for the HTML; an image
    whose file has gone (a cleared cache) is skipped."""
    images = {}
    for study in task.get("studies", []):
        for key, path in study.get("images", {}).items():
            path = Path(path)
            if not path.is_file():
                continue
            data = path.read_bytes()
            write_atomic(out / "plots" / f"{name}-{study['name']}-{key}.png", data)
            images.setdefault(study["name"], {})[key] = {
                "uri": "data:image/png;base64," + base64.b64encode(data).decode(),
                "file": f"plots/{name}-{study['name']}-{key}.png"}
    return images


def _highlight(source: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    return highlight(source, PythonLexer(), HtmlFormatter(nowrap=True))


def code_view(tasks: set[str]) -> list[dict]:
    """The paired modules a reader of this run needs: the shared ones and those of the run's tasks."""
    view = []
    for pair in module_pairs():
        folder = pair.path.split("/")[0]
        if folder in TASKS and folder not in tasks:
            continue
        rows = []
        for name, (a, b) in pair.blocks.items():
            rows.append({"name": name,
                         "torch": _highlight(a.source) if a and a.source.strip() else "",
                         "tensorflow": _highlight(b.source) if b and b.source.strip() else "",
                         "loc": {"torch": a.loc if a else 0, "tensorflow": b.loc if b else 0}})
        view.append({"path": pair.path, "loc": pair.loc, "api_calls": pair.api_calls, "rows": rows})
    return view


def _answers(claim: dict) -> set[str]:
    return {a.strip() for a in claim.get("seed_answer", "").split(",")}


def render(results: dict, out: str | Path) -> None:
    from jinja2 import Environment, FileSystemLoader, is_undefined
    from pygments.formatters import HtmlFormatter

    out = Path(out)
    peak = results["run"].get("matmul_peak", {}).get("gflops", 0.0)
    sections = []
    for name, task in results["tasks"].items():
        svgs = task_plots(task, peak, primary_metric(task.get("task") or name.split(".")[0]))
        for plot, svg in svgs.items():
            write_atomic(out / "plots" / f"{name}-{plot}.svg", svg)
        sections.append({"name": name, "task": task,
                         "plots": {k: inline_svg(v, f"{name}-{k}".replace(".", "-")) for k, v in svgs.items()},
                         "images": study_images(task, name, out),
                         "plot_files": {k: f"plots/{name}-{k}.svg" for k in svgs},
                         "parity_summary": summarize(task.get("parity", [])) if task.get("parity") else [],
                         # a study-only task (TaskEntry.studies_on) trains, exports and times nothing of its own
                         "studies_only": bool(getattr(TASKS.get(task.get("task") or ""), "studies_on", ""))})
    # HTML escaping for the page only: report.md is Markdown, where an apostrophe is no "&#39;".
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=lambda name: bool(name) and ".html" in name,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["human"] = human
    env.filters["section_label"] = guide.section_label
    # None or absent (a run that failed before the stage wrote it): a figure with nothing to show.
    env.filters["g"] = lambda v, digits=3: "-" if v is None or is_undefined(v) else f"{v:.{digits}g}"
    env.filters["f4"] = lambda v: "-" if v is None or is_undefined(v) else f"{v:.4f}"
    answers = results.get("summary") or summary.summarize(results)
    context = {"results": results, "sections": sections, "claims": results.get("claims", []),
               "summary": answers, "headline": summary.headline(answers), "label": summary.LABEL,
               "headline_claims": [c for c in results.get("claims", []) if _answers(c) & {"13", "30"}],
               "other_claims": [c for c in results.get("claims", []) if not _answers(c) & {"13", "30"}],
               "timing_protocol": TIMING_PROTOCOL, "training_target": training_speed.TARGET_RATIO,
               "reference_steps": training_speed.REFERENCE_STEPS,
               "verdict_class": VERDICT_CLASS, "guide": guide.entries(), "peak": peak,
               "pygments_css": HtmlFormatter().get_style_defs(".code"),
               "anchors": {f"task-{s['name']}" for s in sections}
               | {"summary", "claims", "code", "guide", "environment"}
               | {f"study-{s['name']}-{st['name']}" for s in sections for st in s["task"].get("studies", [])}}
    context["code"] = code_view({s["task"].get("task") or s["name"].split(".")[0] for s in sections})
    write_atomic(out / "index.html", env.get_template("index.html.j2").render(**context))
    write_atomic(out / "report.md", env.get_template("report.md.j2").render(**context))
