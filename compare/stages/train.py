"""Stage ``train``: both twins trained from one initialisation (or taken from the cache), their quality on
the test split, and each twin's training loop timed against its framework's bare step."""

from __future__ import annotations

import json

import numpy as np

from shared import weights as W
from shared.weights import write_atomic

from .. import training_speed
from ..training_speed import framework_step
from . import REFERENCE, RunContext, scalars

TRAINING_SPEED_STEP = "training speed: each twin's loop against its framework's bare step"


class Initialisation:
    """Fresh models holding the reference framework's seeded initialisation, moved through the canonical layout.

    Both frameworks start training from the same weights, so the gap between their trained models measures
    the frameworks, not two random draws (with torch as the reference, the torch model is exactly what its
    own ``train`` would have built). With ``spec.body_from``, the body (``spec.body_keys``) comes from that
    run's trained reference model, read from its cache folder (``trained_body``)."""

    def __init__(self, twins: dict, body_cache):
        """body_cache(run_name) -> the TaskCache of that run at this run's preset."""
        self.twins, self.body_cache = twins, body_cache
        self._made: tuple | None = None  # (spec, canonical tensors), made on first use

    def model(self, framework: str, spec):
        import torch

        if self._made is None or self._made[0] is not spec:
            torch.manual_seed(spec.train.seed)
            reference = self.twins[REFERENCE]
            tensors = reference.bridge.export_weights(reference.task.build_model(spec))
            if getattr(spec, "body_from", None):
                tensors.update(self.trained_body(spec, tensors))
            self._made = (spec, tensors)
        twin = self.twins[framework]
        return twin.bridge.import_weights(twin.task.build_model(spec), self._made[1])

    def trained_body(self, spec, initial: dict) -> dict:
        """The body tensors (``spec.body_keys``) of run ``spec.body_from``'s trained reference model (the
        report runs a task's main model before its variants)."""
        path = self.body_cache(spec.body_from).path(f"trained-{REFERENCE}.safetensors")
        if not path.exists():
            raise RuntimeError(f"{spec.task} starts from the trained body of {spec.body_from!r}, which is not in "
                               f"the cache ({path}): run {spec.body_from!r} first (the report runs it before this)")
        trained = W.load_file(path)
        # A model that holds the source's body under a prefix (a segmenter's ``backbone.`` holding the
        # classifier's stages) names it ``spec.body_prefix``.
        prefix = getattr(spec, "body_prefix", "")
        body = {prefix + k: v for k, v in trained.items() if k.startswith(spec.body_keys)}
        wrong = {k: (v.shape, initial.get(k, np.empty(0)).shape) for k, v in body.items()
                 if k not in initial or v.shape != initial[k].shape}
        if not body or wrong:
            raise ValueError(f"{path}: expected body tensors {spec.body_keys} matching {spec.task}'s; received "
                             f"{len(body)} body tensors, mismatched (trained, expected): {wrong}")
        return body


def train(ctx: RunContext, data, init: Initialisation) -> dict:
    """Each framework's trained model (``{framework: model}``; a framework that failed is missing). Records
    ``quality[framework]`` (its own model on the test split) and ``training[framework]`` (time, history)."""
    models = {}
    for fw, twin in ctx.twins.items():
        ctx.step("train", f"train {fw}")
        try:
            weights = ctx.cache.path(f"trained-{fw}.safetensors")
            history_path = ctx.cache.path(f"trained-{fw}.history.json")
            cached = weights.exists() and history_path.exists()
            if cached:
                model = twin.bridge.load_weights(twin.task.build_model(ctx.spec), weights)
                history = json.loads(history_path.read_text())
            else:
                model, history = twin.task.train(ctx.spec, data, model=init.model(fw, ctx.spec), device=ctx.device,
                                                 progress=False)
                if ctx.device != "cpu":  # the exports and every backend start from a model on the CPU
                    model = twin.bridge.import_weights(twin.task.build_model(ctx.spec),
                                                       twin.bridge.export_weights(model))
                twin.bridge.save_weights(model, weights, {"task": ctx.task, "preset": ctx.preset,
                                                          "device": ctx.device})
                write_atomic(history_path, json.dumps(history))
            seconds = history[-1]["seconds"]
            metrics = twin.task.evaluate(model, data.test, ctx.spec)
            ctx.result["quality"][fw] = scalars(metrics)
            # The median epoch's rate too: the whole run's includes the first epoch's tracing and any spell in
            # which a neighbour took a core (on shared machines, epochs 2-3x slower come and go).
            epoch_seconds = np.diff([0.0] + [row["seconds"] for row in history])
            ctx.result["training"][fw] = {"cached": cached, "epochs": len(history), "seconds": seconds,
                                          "images_per_s": len(data.train) * len(history) / seconds,
                                          "median_epoch_images_per_s": len(data.train) / float(
                                              np.median(epoch_seconds)), "history": history,
                                          "per_class_recall": metrics.get("per_class_recall")}
            ctx.progress.printer(f"    {fw}: {'cached' if cached else 'trained'}; test metrics " + ", ".join(
                f"{k} {v:.4f}" for k, v in ctx.result["quality"][fw].items() if v is not None))
            models[fw] = model
        except Exception as err:  # noqa: BLE001 - a failing framework is recorded, the report goes on
            ctx.fail(f"train {fw}", err)
    return models


def training_speed_probe(ctx: RunContext, data, init: Initialisation) -> None:
    """Each twin's training loop against its framework's bare reference step (compare.training_speed):
    ``training[framework]["probe"]``."""
    ctx.step("training speed", TRAINING_SPEED_STEP)
    for fw, twin in ctx.twins.items():
        try:
            probe = training_speed.measure(twin, ctx.spec, data.train, lambda f: init.model(f, ctx.spec),
                                           training_speed.PROBES[ctx.profile])
            ctx.result["training"].setdefault(fw, {})["probe"] = probe
            ctx.progress.printer(f"    {fw}: twin loop {probe['twin_images_per_s']:.0f} images/s, bare "
                                 f"{framework_step(fw)} {probe['reference_images_per_s']:.0f} "
                                 f"(ratio {probe['ratio']:.2f})")
        except Exception as err:  # noqa: BLE001
            ctx.fail(f"training speed {fw}", err)


def reference_models(ctx: RunContext, models: dict) -> dict:
    """Both frameworks' models holding the reference framework's trained weights: what every backend runs."""
    tensors = ctx.twins[REFERENCE].bridge.export_weights(models[REFERENCE])
    reference = {}
    for fw, twin in ctx.twins.items():
        try:
            reference[fw] = twin.bridge.import_weights(twin.task.build_model(ctx.spec), tensors)
        except Exception as err:  # noqa: BLE001
            ctx.fail(f"load reference weights into {fw}", err)
    return reference


__all__ = ["Initialisation", "TRAINING_SPEED_STEP", "reference_models", "train", "training_speed_probe"]
