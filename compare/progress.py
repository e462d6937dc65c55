"""What the report runs now, how long it has taken, and a time left that is worth reading.

The time left is the sum of the expected costs of the steps not yet done:

* a step's cost in an earlier run of the same profile, kept in ``step-costs.json``
  beside the cache, separately for a cold run (its cache folder was new: models
  are trained, artifacts exported) and a warm one (the cache serves them);
* on a first run, the mean cost of the steps of the same kind already done in
  this run (the first backend timed tells what the next ones will take);
* a step of a kind not yet seen has no estimate: the line says how many such
  steps remain instead of guessing.

On a terminal the progress is a rich bar; elsewhere (CI logs, tests) one line
per step. Every line goes through ``printer``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from shared.weights import write_atomic

COSTS_FILE = "step-costs.json"
# Kinds of step whose cost the cache changes (a cold run trains and exports, a warm one loads): their cost in a
# cold run says nothing about a warm one. Timing, parity and studies cost the same either way.
CACHED_KINDS = frozenset({"train", "export", "quantize", "compression"})


@dataclass(frozen=True)
class Step:
    """run: the task or variant (``detection.yolo``); kind: the stage (``train``, ``speed``, ...); what: the
    step in words, unique within its run (the key of its cost)."""

    run: str
    kind: str
    what: str


class CostBook:
    """Step costs of earlier runs: {profile: {run: {"cold" | "warm": {what: seconds}}}}, in ``root``."""

    def __init__(self, root: str | Path | None, profile: str):
        self.path = Path(root) / COSTS_FILE if root is not None else None
        self.profile = profile
        self.book: dict = {}
        if self.path is not None and self.path.exists():
            try:
                self.book = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.book = {}  # a damaged cost file only costs the estimate, never the run

    def runs(self) -> dict:
        """This profile's costs: {run: {"cold" | "warm": {what: seconds}}}."""
        return self.book.get(self.profile, {})

    def get(self, step: Step, temperature: str) -> float | None:
        return self.book.get(self.profile, {}).get(step.run, {}).get(temperature, {}).get(step.what)

    def put(self, step: Step, temperature: str, seconds: float) -> None:
        runs = self.book.setdefault(self.profile, {})
        runs.setdefault(step.run, {}).setdefault(temperature, {})[step.what] = round(seconds, 3)

    def save(self) -> None:
        if self.path is not None:
            write_atomic(self.path, json.dumps(self.book, indent=1, sort_keys=True))


def clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """Tracks the planned ``steps`` of a report; ``step(run, kind, what)`` starts one (ending the previous).

    temperatures: run -> "cold" or "warm" (whether its cache folder existed), which costs to expect.
    """

    def __init__(self, steps: list[Step], costs: CostBook | None = None,
                 temperatures: dict[str, str] | None = None, printer: Callable[[str], None] = print,
                 bar: bool | None = None):
        self.steps, self.costs = list(steps), costs
        self.temperatures = temperatures or {}
        self.started = time.perf_counter()
        self.done: dict[Step, float] = {}
        self.current: tuple[Step, float] | None = None
        self._printer = printer
        self._bar = None
        if bar if bar is not None else (printer is print and sys.stdout.isatty()):
            self._start_bar()

    # -- the estimate ------------------------------------------------------------------------------
    def expected(self, step: Step) -> float | None:
        """The cost to expect of ``step``: from an earlier run at the same temperature (or at the other one, for
        a kind the cache does not shorten), else from this run's steps of its kind."""
        if self.costs is not None:
            temperature = self.temperatures.get(step.run, "cold")
            earlier = self.costs.get(step, temperature)
            if earlier is None and step.kind not in CACHED_KINDS:
                earlier = self.costs.get(step, "warm" if temperature == "cold" else "cold")
            if earlier is not None:
                return earlier
        same_kind = [s for d, s in self.done.items() if d.kind == step.kind]
        return statistics.fmean(same_kind) if same_kind else None

    def left(self) -> tuple[float, int]:
        """(seconds expected for the steps not done, number of those with no estimate yet)."""
        seconds, unknown = 0.0, 0
        now = time.perf_counter()
        for step in self.steps:
            if step in self.done:
                continue
            cost = self.expected(step)
            if cost is None:
                unknown += 1
                continue
            if self.current is not None and step == self.current[0]:
                cost = max(cost - (now - self.current[1]), 0.0)  # the part of the current step still to run
            seconds += cost
        return seconds, unknown

    def describe_left(self) -> str:
        seconds, unknown = self.left()
        remaining = sum(step not in self.done for step in self.steps)
        if unknown and unknown == remaining:
            return "time left not estimated yet"
        known = f"~{clock(seconds)} left"
        return known + (f" + {unknown} step{'s' * (unknown != 1)} of kinds not timed yet" if unknown else "")

    # -- the steps ---------------------------------------------------------------------------------
    def step(self, run: str, kind: str, what: str) -> None:
        self._close_current()
        step = Step(run, kind, what)
        if step not in self.steps:
            self.steps.append(step)  # an unplanned step still counts (and is timed)
        self.current = (step, time.perf_counter())
        index = self.steps.index(step) + 1
        elapsed = time.perf_counter() - self.started
        line = (f"[{run} {index}/{len(self.steps)}] {what} (elapsed {clock(elapsed)}"
                + (f", {self.describe_left()})" if self.done else ")"))
        self.printer(line)
        if self._bar is not None:
            self._bar.update(self._task, completed=len(self.done), total=len(self.steps),
                             description=f"{run}: {what}", left=self.describe_left())

    def finish(self) -> None:
        """End the last step, keep the costs for the next run, close the bar."""
        self._close_current()
        if self.costs is not None:
            self.costs.save()
        if self._bar is not None:
            self._bar.update(self._task, completed=len(self.done), left="done")
            self._bar.stop()
            self._bar = None

    def printer(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, highlight=False, markup=False)
        else:
            self._printer(text)

    def _close_current(self) -> None:
        if self.current is None:
            return
        step, started = self.current
        seconds = time.perf_counter() - started
        self.done[step] = seconds
        if self.costs is not None:
            self.costs.put(step, self.temperatures.get(step.run, "cold"), seconds)
        self.current = None

    def _start_bar(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

        self._bar = Bar(TextColumn("{task.description}", justify="left"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.fields[left]}"), transient=False)
        self._task = self._bar.add_task("starting", total=len(self.steps), left="")
        self._bar.start()
