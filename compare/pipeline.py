"""One task through the whole harness: the stages of compare.stages, in order.

Nothing here knows a particular task: the stages go through the twin contract
(``build_model``, ``train``, ``evaluate``, exporters, bridges), the spec and the
task's plug-in (compare/tasks/<task>.py). Every step that can fail is recorded
as failed with its error, and the rest of the task still runs.

Weights: each framework trains its own model (its quality is reported), and
every backend and export then runs the *same* weights, the PyTorch-trained
ones moved into the TensorFlow twin through the canonical layout, so the
backend parity matrix compares like with like.
"""

from __future__ import annotations

from pathlib import Path

from shared import data as D
from shared.specs import FRAMEWORKS, check_task, get_spec, model_name, run_name, split_run_name

from . import backends as B
from . import speed as S
from .cache import TaskCache
from .frameworks import load_twins
from .progress import Progress, Step
from .stages import REFERENCE, RunContext
from .stages import compression as compression_stage
from .stages import export as export_stage
from .stages import fp32 as fp32_stage
from .stages import parity as parity_stage
from .stages import quantize as quantize_stage
from .stages import speed as speed_stage
from .stages import studies as studies_stage
from .stages import train as train_stage
from .studies import studies_for
from .tasks import plugin

PROFILES = {
    # profile: (model preset, timing budget, batch sizes)
    "quick": ("tiny", S.QUICK, (1, 32)),
    "standard": ("standard", S.STANDARD, (1, 32)),
}


def planned_steps(task: str, variant: str | None = None, profile: str = "standard") -> list[Step]:
    """Every step a run of ``task`` (or its ``variant``) takes, in order, as the progress line names them.

    A variant run has no training-speed probe (its twins train with the main model's loop), no quantize or
    compression step and no quantized backends; a model that cannot be exported whole
    (``spec.export_limit``) has no quantization-aware pt2e variant."""
    name, batches = run_name(task, variant), PROFILES[profile][2]
    if check_task(task).studies_on:  # a study-only task: its data, then its studies
        return [Step(name, kind, what) for kind, what in
                [("data", "data"), *[("study", f"study: {s.name}") for s in studies_for(task, variant)]]]
    limited = getattr(get_spec(task, "tiny", variant), "export_limit", None)
    fp32 = list(B.BACKENDS)
    quantized = [] if variant is not None else [q for q in B.QUANTIZED
                                                if not limited or q not in B.WHOLE_GRAPH_QUANTIZED]
    steps = [("data", "data"), *[("train", f"train {fw}") for fw in FRAMEWORKS],
             *([("training speed", train_stage.TRAINING_SPEED_STEP)] if variant is None else []),
             ("parity", parity_stage.PARITY_STEP), ("export", "export artifacts")]
    if variant is None:
        steps.append(("quantize", quantize_stage.QUANTIZE_STEP))
    steps += [("quality", f"{b}: quality and parity batch") for b in fp32]
    steps += [("quality", f"{b}: quality") for b in quantized]
    if variant is None:
        steps.append(("compression", compression_stage.COMPRESSION_STEP))
    steps += [("speed", speed_stage.step_name(b, batches)) for b in fp32 + quantized]
    steps += [("study", f"study: {study.name}") for study in studies_for(task, variant)]
    return [Step(name, kind, what) for kind, what in steps]


def run_cache(cache_root: str | Path, name: str, preset: str, spec=None) -> TaskCache:
    """The cache folder of run ``name`` (``shared.specs.run_name``) at ``preset``, keyed by its spec (default:
    the registry's) and the specs of the runs it starts from (``spec.body_from``)."""
    task, variant = split_run_name(name)
    spec = spec or get_spec(task, preset, variant)
    depends_on, source = [], getattr(spec, "body_from", None)
    while source:
        source_task, source_variant = split_run_name(source)
        depends_on.append(get_spec(source_task, preset, source_variant))
        source = getattr(depends_on[-1], "body_from", None)
    for source in getattr(spec, "depends_on", ()):  # other runs whose trained models its data uses
        source_task, source_variant = split_run_name(source)
        depends_on.append(get_spec(source_task, preset, source_variant))
    return TaskCache(cache_root, name, preset, spec, tuple(depends_on))


_DATA: dict = {}


def task_data(spec, preset: str | None = None, cache_root: str | Path | None = None, printer=print):
    """The data of ``spec`` (shared.data.load), generated once for a task's main model and each of its
    variants: they share ``spec.data`` (a detection set of the standard preset takes about 15 s to render).
    With ``preset`` and ``cache_root``, completed by the task plug-in's ``prepare_data`` where it has one (outputs of another
    run's trained model, read from that run's cache folder)."""
    key = (spec.task, spec.data)
    if key not in _DATA:
        _DATA.clear()  # one data set held at a time
        _DATA[key] = D.load(spec)
    data = _DATA[key]
    prepare = plugin(spec.task).prepare_data if preset is not None else None
    if prepare is None:
        return data
    return prepare(spec, data, preset, lambda run: run_cache(cache_root, run, preset), printer)


class TaskRun:
    """One run (a task's main model, or with ``variant`` one of ``TaskEntry.variants``) through the stages;
    ``run()`` returns its entry of results.json (docs/ARCHITECTURE.md, "Results schema").

    A variant's run covers training, parity, exports and the fp32 backends; the training-speed probe (each
    twin's loop against its framework's bare step: the same loop for every model of a task), quantization
    and compression belong to the task's main model.
    """

    def __init__(self, task: str, profile: str, cache_root: Path, threads: int, progress: Progress,
                 variant: str | None = None, device: str = "cpu"):
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
        preset, budget, batches = PROFILES[profile]
        spec = get_spec(task, preset, variant)
        name = run_name(task, variant)
        result = {"status": "ok", "errors": [], "parity": [], "speed": [], "size": [], "quality": {},
                  "backends": [], "training": {}, "exports": [], "preset": preset, "task": task,
                  "variant": variant, "model": model_name(task, variant)}
        self.ctx = RunContext(task, variant, name, profile, preset, budget, batches, spec, threads,
                              Path(cache_root), run_cache(cache_root, name, preset, spec), load_twins(task),
                              progress, result, device)
        self.init = train_stage.Initialisation(self.ctx.twins, lambda source: run_cache(cache_root, source, preset))

    # The run's identity, for callers that change the spec before running (tests) or read its cache.
    @property
    def spec(self):
        return self.ctx.spec

    @spec.setter
    def spec(self, spec) -> None:
        self.ctx.spec = spec

    @property
    def name(self) -> str:
        return self.ctx.name

    @property
    def cache(self) -> TaskCache:
        return self.ctx.cache

    @property
    def twins(self) -> dict:
        return self.ctx.twins

    @property
    def result(self) -> dict:
        return self.ctx.result

    def initial_model(self, framework: str, spec=None):
        """A fresh ``framework`` model holding the run's shared initialisation (``train.Initialisation``)."""
        return self.init.model(framework, spec or self.ctx.spec)

    def run(self) -> dict:
        ctx, main_model = self.ctx, self.ctx.variant is None
        ctx.step("data", "data")
        data = task_data(ctx.spec, ctx.preset, ctx.cache_root, ctx.progress.printer)
        if check_task(ctx.task).studies_on:  # no twins of its own: nothing to train, export or time
            ctx.result["model_task"] = check_task(ctx.task).studies_on
            studies_stage.studies(ctx, data, {}, self.init)
            ctx.result["status"] = "failed" if ctx.result["errors"] else "ok"
            return ctx.result
        models = train_stage.train(ctx, data, self.init)
        if main_model:
            train_stage.training_speed_probe(ctx, data, self.init)
        parity_stage.parity_levels(ctx)
        if REFERENCE not in models:
            ctx.result["status"] = "failed"
            return ctx.result
        reference = train_stage.reference_models(ctx, models)
        artifacts = export_stage.export(ctx, reference)
        runners = fp32_stage.runners(ctx, reference, artifacts)
        quantized = quantize_stage.quantize(ctx, reference, artifacts, data) if main_model else {}
        fp32_stage.backend_matrix(ctx, runners, data)
        quantize_stage.quantized_quality(ctx, quantized, runners, data)
        if main_model:
            compression_stage.compression(ctx, reference, data)
        speed_stage.speed(ctx, {**runners, **quantized}, data, reference)
        quantize_stage.summary(ctx)
        studies_stage.studies(ctx, data, models, self.init)
        if ctx.result["errors"]:
            ctx.result["status"] = "failed" if not runners else "ok"
        return ctx.result

    def exports(self) -> dict[str, Path]:
        """Only the first stages: train (or take from the cache) both twins, then export the reference model's
        artifacts (``twinvision export``); {artifact: path}. Failures are in ``self.result["errors"]``."""
        ctx = self.ctx
        ctx.step("data", "data")
        models = train_stage.train(ctx, task_data(ctx.spec, ctx.preset, ctx.cache_root, ctx.progress.printer),
                                   self.init)
        if REFERENCE not in models:
            return {}
        return export_stage.export(ctx, train_stage.reference_models(ctx, models))


__all__ = ["PROFILES", "REFERENCE", "TaskRun", "planned_steps", "run_cache", "task_data"]
