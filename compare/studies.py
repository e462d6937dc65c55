"""Studies: what a task measures beyond the harness's common steps, with the seed's claims they grade.

A task's plug-in (compare/tasks/<task>.py, ``TaskPlugin.studies``) lists its studies. Each is a function
``study(ctx) -> dict`` that the harness calls after the task's models are trained (``StudyContext``); ``Study.runs`` says on which of the task's
runs: its main model, some of its variants (``TaskEntry.variants``) or every one. A study returns::

    {"title", "text",                             # what it measures and how
     "columns", "rows",                           # its table
     "plot": {"kind", ...} | None,                # drawn by compare.report.plots.study_plot
     "verdicts": [{"claim", "verdict", "evidence"}],
     "images": {name: path},                      # PNG files (in the cache) the report embeds
     "parity": [entries]}                         # optional: comparisons the CI gate checks (compare.parity.entry's
                                                  # form), moved into the run's parity list

to which the harness adds the ``Study``'s ``name`` and ``seed_answers``; the report renders every
study the same way. Studies reuse what the harness cached (trained
weights) and cache what they train themselves, so a warm report redoes none of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

# The seed's verdict words, as compare.claims uses them.
SUPPORTED, REFUTED, MIXED = "supported", "refuted", "mixed"


@dataclass
class StudyContext:
    """What a study may use: the spec and data of the run, both twins, each framework's own trained
    model (``models``), the run's cache (``cache.path(name)``, ``cache.artifact(name, make)``), a
    printer for progress lines, and ``initial_model(framework, spec)``: a fresh model holding the
    run's shared initialisation, to train a study's own models from the same start as the run's; the
    report's profile and the run's preset."""

    spec: Any
    data: Any
    twins: dict
    models: dict
    cache: Any
    printer: Callable[[str], None] = print
    initial_model: Callable | None = None
    profile: str = "standard"  # the report's profile (compare.pipeline.PROFILES): a study may size itself by it
    preset: str = "standard"   # the preset of the run's spec


@dataclass(frozen=True)
class Study:
    """A registered study: ``run(ctx)`` returns the dict described in the module docstring, whose ``name``
    (the report's anchor ``study-<run>-<name>``) and ``seed_answers`` are these."""

    run: Callable[[StudyContext], dict]
    name: str
    seed_answers: tuple[int, ...]
    # The runs it belongs to: None is the task's main model, a string one of its variants; EVERY_RUN: all of
    # them (each with its own spec and models).
    runs: tuple[str | None, ...] | str = (None,)

    def runs_on(self, variant: str | None) -> bool:
        return self.runs == EVERY_RUN or variant in self.runs


EVERY_RUN = "every run"


def studies_for(task: str, variant: str | None) -> list[Study]:
    """The studies a run of ``task`` (or its ``variant``) runs: its plug-in's (compare/tasks/<task>.py)."""
    from .tasks import plugin

    return [s for s in plugin(task).studies if s.runs_on(variant)]


__all__ = ["EVERY_RUN", "MIXED", "REFUTED", "SUPPORTED", "Study", "StudyContext", "studies_for"]
