"""The harness plug-ins of the tasks: what the compare harness needs from a task beyond its twins.

Each runnable task has a module here, ``compare/tasks/<task>.py``, that defines ``PLUGIN``, a
``TaskPlugin``. The generic harness (pipeline, studies, claims, parity, workloads, the study guide) asks
``plugin(task)`` and never names a task itself; a new task adds its module and nothing here changes
(docs/ARCHITECTURE.md, "Adding a task").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from shared import task_module


@dataclass(frozen=True)
class TaskPlugin:
    """studies: the task's ``compare.studies.Study`` list (run after its models are trained).
    claims: the claims of its seed answers, ``(id, seed answers, text, judge)`` as compare.claims grades them.
    compare_postprocessed: for a task with a post-processing step (the twins' ``postprocess``), the L5
        comparison of two backends' post-processed outputs of the same images:
        ``(spec, name_a, a, name_b, b, what, min_score) -> [parity entries]``; None where outputs are final.
    served_min_score: the score from which the report compares served (post-processed) outputs of the trained
        model across backends, well above the post-processing's own cut, where float noise between backends
        can move an output across it.
    workloads: reference workloads built on this task's twins, ``{name: spec builder}`` (compare.workloads
        times them through every backend).
    prepare_data: where the task's data needs something only the harness has (the distillation task's teacher
        logits, from another run's trained model): ``(spec, data, preset, cache_of, printer) -> data``, called
        after the data is loaded and before anything trains; ``cache_of(run)`` is that run's cache folder at
        the preset. None where ``shared.data.load`` gives the whole data.
    """

    studies: tuple[Any, ...] = ()
    claims: tuple[tuple[str, str, str, Callable], ...] = ()
    compare_postprocessed: Callable | None = None
    served_min_score: float = 0.0
    workloads: dict[str, Callable] = field(default_factory=dict)
    prepare_data: Callable | None = None


NOT_MEASURABLE = "not measurable here"  # compare.claims' verdict for a claim this run cannot grade


def study_verdict(task: str, name: str, index: int = 0) -> Callable:
    """A claim judge (``TaskPlugin.claims``) that takes verdict ``index`` of study ``name`` of ``task``'s results,
    its evidence split into lines; not measurable where the task or the study did not run."""

    def judge(results: dict, code: dict, env: dict) -> tuple[str, list[str]]:
        found = results.get("tasks", {}).get(task)
        if not found:
            return NOT_MEASURABLE, [f"the {task} task is not in this run (twinvision report --tasks {task})"]
        study = next((s for s in found.get("studies", []) if s.get("name") == name), None)
        if study is None or len(study.get("verdicts", [])) <= index:
            return NOT_MEASURABLE, [f"the {name} study did not finish in this run (see the task's errors)"]
        verdict = study["verdicts"][index]
        return verdict["verdict"], [line.strip() for line in verdict["evidence"].split("; ")]

    return judge


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of a study's runs over seeds."""
    import numpy as np

    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def plugin(task: str) -> TaskPlugin:
    """The ``PLUGIN`` of ``compare.tasks.<task>``; a clear error for a task without one."""
    module = task_module(__name__, task, "PLUGIN = TaskPlugin(...)")
    found = getattr(module, "PLUGIN", None)
    if not isinstance(found, TaskPlugin):
        raise TypeError(f"compare/tasks/{task}.py: expected PLUGIN to be a TaskPlugin; received {found!r}")
    return found


__all__ = ["NOT_MEASURABLE", "TaskPlugin", "mean_sd", "plugin", "study_verdict"]
