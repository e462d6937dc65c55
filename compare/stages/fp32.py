"""Stage ``fp32 backends``: every backend of the reference weights (eager, compiled, ONNX Runtime, TFLite)
scored on the test split, every pair compared on one batch, and, for a task with a post-processing step,
each backend's served outputs against the reference's."""

from __future__ import annotations

from pathlib import Path

from shared.specs import FRAMEWORKS

from .. import backends as B
from ..parity import entry, selection_parity
from ..tasks import plugin
from . import REFERENCE, RunContext, scalars


def runners(ctx: RunContext, reference: dict, artifacts: dict[str, Path]) -> dict[str, B.Runner]:
    """``{backend: runner}`` for every fp32 backend that could be made; records a ``backends`` row each (ok, or
    failed with its error; ``part`` where the backend runs a model's export view and its framework the rest)."""
    made, limit = {}, getattr(ctx.spec, "export_limit", None)
    for name in B.BACKENDS:
        row = {"name": name, "source": B.SOURCE[name]}
        if limit and name not in B.NATIVE:  # the export view here, the rest in the source framework
            row["part"] = f"the export view here, the rest in {B.SOURCE[name]}: {limit}"
        try:
            made[name] = B.make_runner(name, reference, artifacts, ctx.spec, ctx.threads)
            ctx.result["backends"].append({**row, "status": "ok"})
        except Exception as err:  # noqa: BLE001
            ctx.result["backends"].append({**row, "status": "failed", "error": ctx.fail(f"backend {name}", err)})
    return made


def backend_matrix(ctx: RunContext, runners: dict[str, B.Runner], data) -> None:
    """Quality of every backend on the test split (``backends[*].quality``; ``quality[backend]`` for the
    exports), and every pair's max diff on one batch (``parity``, ``backends/...``). A backend that fails here
    is marked failed and dropped from ``runners``."""
    outputs = {}
    for name, runner in list(runners.items()):
        ctx.step("quality", f"{name}: quality and parity batch")
        try:
            full = runner.predict(data.test.images, batch=32)
            metrics = scalars(ctx.evaluate(full, data.test, B.SOURCE[name]))
            ctx.backend_row(name)["quality"] = metrics
            # quality["torch"] / ["tensorflow"] hold each framework's *own* trained model; the backends of the
            # same name run the reference weights, so they are listed under "backends" only.
            if name not in FRAMEWORKS:
                ctx.result["quality"][name] = metrics
            outputs[name] = {k: v[:32] for k, v in full.items()}
        except Exception as err:  # noqa: BLE001
            ctx.fail(f"backend {name} run", err)
            ctx.mark_failed(name, err)
            del runners[name]
    names, tol = list(outputs), ctx.spec.tolerances.onnx
    selected = getattr(ctx.spec, "selected_outputs", {})  # compared by paired rows (selection_parity)
    by_slot = [k for k in ctx.spec.output_keys if k not in selected and not any(k in d for d in selected.values())]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for key in by_slot:
                ctx.result["parity"].append(entry(a, b, f"backends/{key}", outputs[a][key], outputs[b][key], tol))
            for key, dependents in selected.items():
                ctx.result["parity"].extend(selection_parity(a, b, "backends", key, dependents, outputs[a],
                                                             outputs[b], tol))
    served_outputs(ctx, outputs)


def served_outputs(ctx: RunContext, outputs: dict) -> None:
    """For a task with a post-processing step (a detector's decoding and NMS): each backend's raw outputs
    post-processed by the twin of its source framework, as that framework would serve them, against the
    reference backend's, by the task's own comparison (L5 on the trained model: post-processing runs after
    the exported graph, in the framework). ``parity`` entries ``backends/served/...``."""
    task_plugin = plugin(ctx.task)
    if REFERENCE not in outputs or task_plugin.compare_postprocessed is None:
        return
    served = {name: ctx.twins[B.SOURCE[name]].task.postprocess(out, ctx.spec) for name, out in outputs.items()}
    for name in outputs:
        if name != REFERENCE:
            ctx.result["parity"].extend(task_plugin.compare_postprocessed(
                ctx.spec, REFERENCE, served[REFERENCE], name, served[name], "backends/served",
                min_score=task_plugin.served_min_score))


__all__ = ["backend_matrix", "runners", "served_outputs"]
