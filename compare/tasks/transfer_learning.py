"""The transfer-learning task's harness plug-in (seed answers 3 and 18): the source model made sure of, one study
per target domain (four strategies at several training-set sizes over seeds, in both frameworks), the port of
torchvision's ResNet-18 as a frozen feature extractor, and the claims they grade."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from shared.data.transfer_learning import load_target
from shared.specs import FRAMEWORKS
from shared.specs.transfer_learning import STRATEGIES, TARGET_CLASSES
from shared.weights import is_canonical_key

from ..studies import MIXED, REFUTED, SUPPORTED, Study, StudyContext
from . import TaskPlugin, mean_sd
from .classification import trained_model

NOT_MEASURABLE, TIE = "not measurable here", "tie"
PRETRAINED = tuple(s for s in STRATEGIES if s != "scratch")
DEPTH = {"frozen": 0, "top": 1, "full": 2}  # how much of the pretrained network fine-tunes


@dataclass(frozen=True)
class Plan:
    """targets: the target studies that run; sizes: training images per class (0: all); seeds per cell; steps:
    optimiser steps of every training, whatever its data size (epochs = steps x batch / images): equal
    compute for every cell, so small sets are seen many times and the full set a few."""

    targets: tuple[str, ...]
    sizes: tuple[int, ...]
    seeds: int
    steps: int
    port_size: int = 64      # the ResNet-18 port's input side (px)
    port_per_class: int = 0  # its training images per class (0: all)


PLANS = {"quick": Plan(targets=("textures",), sizes=(10, 0), seeds=2, steps=24, port_size=32, port_per_class=20),
         "standard": Plan(targets=("digits", "faces", "textures"), sizes=(10, 50, 0), seeds=2, steps=60)}


def ensure_source(spec, data, preset: str, cache_of, printer=print):
    """``TaskPlugin.prepare_data``: the source run's trained model must be in its cache before the train stage
    reads its body (trained there now when that run has not run); the data itself is complete."""
    if spec.body_from is not None:
        trained_model(preset, cache_of, printer)
    return data


def _plan(ctx: StudyContext) -> Plan:
    return PLANS.get(ctx.profile, PLANS["standard"])


def _size_name(per_class: int) -> str:
    return str(per_class) if per_class else "all"


def _cell_spec(spec, target: str, per_class: int, strategy: str, seed: int, steps: int):
    data = dataclasses.replace(spec.data, target=target, samples_per_class=per_class)
    n = len(load_target(data).train)
    epochs = max(1, math.ceil(steps * spec.train.batch_size / n))
    return dataclasses.replace(spec, data=data, strategy=strategy,
                               model=dataclasses.replace(spec.model, num_classes=TARGET_CLASSES[target]),
                               train=dataclasses.replace(spec.train, seed=seed, epochs=epochs))


def _cell(ctx: StudyContext, framework: str, target: str, per_class: int, strategy: str, seed: int) -> dict:
    """One training of the grid (cached): final test accuracy, seconds, and the (seconds, accuracy) curve."""
    plan = _plan(ctx)
    spec = _cell_spec(ctx.spec, target, per_class, strategy, seed, plan.steps)

    def make() -> dict:
        twin = ctx.twins[framework]
        data = load_target(spec.data)
        model, history = twin.task.train(spec, data, model=ctx.initial_model(framework, spec), progress=False)
        return {"accuracy": history[-1]["test_accuracy"], "seconds": history[-1]["seconds"],
                "epochs": len(history), "train_images": len(data.train),
                "curve": [[row["seconds"], row["test_accuracy"]] for row in history]}

    name = f"{target}-{_size_name(per_class)}-{strategy}-{framework}-seed{seed}-steps{plan.steps}.json"
    found, cached = ctx.cache.json(name, make)
    if not cached:
        ctx.printer(f"    {framework} {target} {_size_name(per_class)}/class {strategy} seed {seed}: accuracy "
                    f"{found['accuracy']:.3f} in {found['seconds']:.1f}s")
    return found


def _noise(a: list[float], b: list[float]) -> float:
    """Twice the standard error of mean(b) - mean(a)."""
    return 2 * math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b)) if min(len(a), len(b)) > 1 \
        else float("nan")


def _time_to(curve: list[list[float]], accuracy: float) -> float | None:
    """Seconds of training until the test accuracy first reaches ``accuracy`` (None: never)."""
    return next((seconds for seconds, found in curve if found >= accuracy - 1e-9), None)


def target_study(target: str):
    """The study of one target: every strategy at every size of the plan, per framework, over seeds."""

    def run(ctx: StudyContext) -> dict:
        plan = _plan(ctx)
        if target not in plan.targets:
            return {"title": f"Transfer to {target} (seed answers 3, 18)",
                    "text": f"Not in the {ctx.profile} profile, which studies {', '.join(plan.targets)} only; the "
                            f"standard profile studies every target.",
                    "columns": [], "rows": [], "plot": None, "verdicts": [], "images": {}}
        seeds = [ctx.spec.train.seed + k for k in range(plan.seeds)]
        cells = {(fw, size, strategy): [_cell(ctx, fw, target, size, strategy, seed) for seed in seeds]
                 for fw in FRAMEWORKS for size in plan.sizes for strategy in STRATEGIES}
        rows = []
        for (fw, size, strategy), runs in cells.items():
            mean, sd = mean_sd([r["accuracy"] for r in runs])
            rows.append({"framework": fw, "per_class": _size_name(size), "train_images": runs[0]["train_images"],
                         "strategy": strategy, "seeds": len(runs), "epochs": runs[0]["epochs"],
                         "test_accuracy": mean, "accuracy_sd": sd,
                         "seconds": float(np.mean([r["seconds"] for r in runs]))})
        accuracy = {key: [r["accuracy"] for r in runs] for key, runs in cells.items()}
        sizes = [_size_name(s) for s in plan.sizes]
        return {"title": f"Transfer to {target} (seed answers 3, 18)",
                "text": f"The classification model's backbone (pretrained on the shapes on textures) on the {target} "
                        f"target, against the same network from scratch: frozen (a new head only), top (the last "
                        f"stage and the head), full (every layer from the pretrained weights). Each cell trains "
                        f"{plan.steps} steps of {ctx.spec.train.batch_size} images from {len(seeds)} seeds (head "
                        f"initialisation and batch order) with the task's rate and schedule; test accuracy on "
                        f"the same held-out images for every size, mean and sample standard deviation; seconds: "
                        f"training time of the whole run.",
                "columns": ["framework", "per_class", "train_images", "strategy", "seeds", "epochs",
                            "test_accuracy", "accuracy_sd", "seconds"],
                "rows": rows,
                "plot": {"kind": "lines", "style": "what",
                         "title": f"{target}: test accuracy against training images per class",
                         "ylabel": "test accuracy", "xlabel": "training images per class", "labels": sizes,
                         "series": {f"{fw} {s}": [float(np.mean(accuracy[fw, size, s])) for size in plan.sizes]
                                    for fw in FRAMEWORKS for s in STRATEGIES},
                         "errors": {f"{fw} {s}": [mean_sd(accuracy[fw, size, s])[1] for size in plan.sizes]
                                    for fw in FRAMEWORKS for s in STRATEGIES}},
                "verdicts": [_little_data(accuracy, plan), _faster(cells, plan), _what_to_freeze(accuracy, plan)],
                "images": {}}

    run.__name__ = f"{target}_study"
    return run


def _little_data(accuracy: dict, plan: Plan) -> dict:
    """At the smallest size: the best pretrained strategy against scratch, per framework, beyond the noise."""
    claim, size, lines, outcomes = "Pretrained features generalise better than training from scratch when target " \
                                   "data is scarce", min(s for s in plan.sizes if s) , [], []
    for fw in FRAMEWORKS:
        best = max(PRETRAINED, key=lambda s: np.mean(accuracy[fw, size, s]))
        gain = float(np.mean(accuracy[fw, size, best]) - np.mean(accuracy[fw, size, "scratch"]))
        noise = _noise(accuracy[fw, size, "scratch"], accuracy[fw, size, best])
        outcomes.append(SUPPORTED if gain > noise else REFUTED if gain < -noise else TIE)
        lines.append(f"{fw}, {size} per class: {best} {np.mean(accuracy[fw, size, best]):.3f} against scratch "
                     f"{np.mean(accuracy[fw, size, 'scratch']):.3f} ({gain:+.3f}, noise {noise:.3f})")
    return {"claim": claim, "verdict": outcomes[0] if len(set(outcomes)) == 1 else MIXED, "evidence": "; ".join(lines)}


def _faster(cells: dict, plan: Plan) -> dict:
    """With all the data: seconds until the fastest pretrained strategy reaches scratch's final accuracy (mean over
    seeds), against scratch's whole training."""
    claim, size, lines, outcomes = "Starting from pretrained weights cuts the training time needed", max(
        plan.sizes, key=lambda s: s or 1e9), [], []
    for fw in FRAMEWORKS:
        scratch = cells[fw, size, "scratch"]
        target = float(np.mean([r["accuracy"] for r in scratch]))
        scratch_s = float(np.mean([r["seconds"] for r in scratch]))
        reached = {s: [_time_to(r["curve"], target) for r in cells[fw, size, s]] for s in PRETRAINED}
        times = {s: float(np.mean(t)) for s, t in reached.items() if all(v is not None for v in t)}
        if not times:
            outcomes.append(REFUTED)
            lines.append(f"{fw}: no pretrained strategy reached scratch's {target:.3f} in {plan.steps} steps")
            continue
        best = min(times, key=times.get)
        outcomes.append(SUPPORTED if times[best] < 0.8 * scratch_s else TIE if times[best] < 1.25 * scratch_s
                        else REFUTED)
        lines.append(f"{fw}, {_size_name(size)} per class: {best} reaches scratch's final {target:.3f} after "
                     f"{times[best]:.1f}s, scratch takes {scratch_s:.1f}s ({scratch_s / times[best]:.1f}x; a "
                     f"difference under 20% counts as a tie)")
    return {"claim": claim, "verdict": outcomes[0] if len(set(outcomes)) == 1 else MIXED, "evidence": "; ".join(lines)}


def _what_to_freeze(accuracy: dict, plan: Plan) -> dict:
    """The best pretrained strategy per size: the claim holds where fine-tuning reaches deeper as data grows
    (frozen or top with the least data, no shallower with the most)."""
    claim = "Freeze the early layers when target data is scarce and fine-tune more of them as it grows"
    small, large = min(s for s in plan.sizes if s), max(plan.sizes, key=lambda s: s or 1e9)
    lines, outcomes = [], []
    for fw in FRAMEWORKS:
        best = {size: max(PRETRAINED, key=lambda s: np.mean(accuracy[fw, size, s])) for size in plan.sizes}
        ok = DEPTH[best[large]] >= DEPTH[best[small]] and best[small] != "full"
        outcomes.append(SUPPORTED if ok else REFUTED)
        lines.append(f"{fw}: best " + ", ".join(f"{_size_name(size)} per class {best[size]} "
                                                 f"{np.mean(accuracy[fw, size, best[size]]):.3f}"
                                                 for size in plan.sizes))
    return {"claim": claim, "verdict": outcomes[0] if len(set(outcomes)) == 1 else MIXED, "evidence": "; ".join(lines)}


# ------------------------------------------------------------------------------------- ResNet-18 port

IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def resnet18_port_study(ctx: StudyContext) -> dict:
    """torchvision's ResNet-18 ``state_dict`` in both twins as a frozen feature extractor on the digits target:
    the pooled features side by side and a logistic-regression head on each framework's features."""
    import torch
    import torchvision
    from sklearn.linear_model import LogisticRegression

    from shared.specs.classification import resnet18

    from ..frameworks import load_twins

    plan = _plan(ctx)  # 64 px: ResNet-18's stride of 32 leaves 2 x 2 at its last stage
    spec = resnet18(image_size=plan.port_size)
    data = load_target(dataclasses.replace(ctx.spec.data, target="digits", image_size=plan.port_size,
                                           samples_per_class=plan.port_per_class))
    torch.manual_seed(ctx.spec.train.seed)
    # weights=None: nothing is downloaded here; a user with ImageNet weights passes them and nothing else changes.
    state = {k: v.numpy() for k, v in torchvision.models.resnet18(weights=None).state_dict().items()
             if is_canonical_key(k)}  # the canonical layout leaves torch's num_batches_tracked counters out
    twins = load_twins("classification")
    features, rows = {}, []
    for fw, twin in twins.items():
        model = twin.bridge.import_weights(twin.task.build_model(spec), state)
        for split_name, split in (("train", data.train), ("test", data.test)):
            images = ((split.images - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)
            outputs = twin.task.predict(model, images, with_features=True, batch_size=64)
            last = outputs[f"features.{len(spec.model.depths) - 1}"]
            features[fw, split_name] = last.mean(axis=(1, 2))  # the global average pool before ``fc``
        head = LogisticRegression(max_iter=2000).fit(features[fw, "train"], data.train.labels)
        rows.append({"framework": fw, "feature_dim": int(features[fw, "train"].shape[1]),
                     "train_images": len(data.train), "test_accuracy": float(head.score(features[fw, "test"],
                                                                                         data.test.labels))})
    scale = float(np.abs(features["torch", "test"]).max())
    worst = float(max(np.abs(features["torch", s] - features["tensorflow", s]).max() for s in ("train", "test")))
    tol = spec.tolerances.forward * scale
    for row in rows:
        row["features_max_abs_diff"], row["tolerance"] = worst, tol
    gap = abs(rows[0]["test_accuracy"] - rows[1]["test_accuracy"])
    verdict = SUPPORTED if worst <= tol and gap <= 0.01 else REFUTED
    return {"title": "torchvision's ResNet-18 as a frozen feature extractor in both frameworks (seed answer 3)",
            "text": f"torchvision.models.resnet18's state_dict (random initialisation: nothing is downloaded here; "
                    f"ImageNet weights take the same path) loaded into both twins through the canonical layout; "
                    f"the digits at {plan.port_size} px ({len(data.train)} training images), ImageNet-normalised, "
                    f"through the frozen network; the last "
                    f"stage's globally averaged features compared between the frameworks, and a logistic "
                    f"regression (scikit-learn) fitted on each framework's training features.",
            "columns": ["framework", "feature_dim", "train_images", "test_accuracy", "features_max_abs_diff",
                        "tolerance"],
            "rows": rows, "plot": None,
            "verdicts": [{"claim": "A pretrained network's weights load into either framework and give the same "
                                   "features", "verdict": verdict,
                          "evidence": f"features differ by at most {worst:.2e} (tolerance {tol:.2e}, "
                                      f"{spec.tolerances.forward:g} of the largest feature); logistic-regression test "
                                      f"accuracy {rows[0]['test_accuracy']:.3f} (torch) against "
                                      f"{rows[1]['test_accuracy']:.3f} (tensorflow)"}],
            "parity": [{"a": "torch", "b": "tensorflow", "what": "resnet18-port/features", "max_abs": worst,
                        "tol": tol, "ok": worst <= tol}],
            "images": {}}


# ------------------------------------------------------------------------------------- claims


def _across_targets(index: int):
    """A claim graded by verdict ``index`` of every target study that ran: the same verdict everywhere, or mixed."""

    def judge(results: dict, code: dict, env: dict) -> tuple[str, list[str]]:
        task = results.get("tasks", {}).get("transfer_learning")
        if not task:
            return NOT_MEASURABLE, ["the transfer_learning task is not in this run"]
        found = [s["verdicts"][index] for s in task.get("studies", []) if s.get("name", "").startswith("target-")
                 and len(s.get("verdicts", [])) > index]
        if not found:
            return NOT_MEASURABLE, ["no target study finished in this run (see the task's errors)"]
        verdicts = {f["verdict"] for f in found}
        return (verdicts.pop() if len(verdicts) == 1 else MIXED), [line.strip() for f in found
                                                                   for line in f["evidence"].split("; ")]

    return judge


def _port(results: dict, code: dict, env: dict) -> tuple[str, list[str]]:
    task = results.get("tasks", {}).get("transfer_learning") or {}
    study = next((s for s in task.get("studies", []) if s.get("name") == "resnet18-port"), None)
    if not study or not study.get("verdicts"):
        return NOT_MEASURABLE, ["the ResNet-18 port study did not run (standard profile)"]
    return study["verdicts"][0]["verdict"], [study["verdicts"][0]["evidence"]]


PLUGIN = TaskPlugin(
    studies=tuple(Study(target_study(t), f"target-{t}", (3, 18)) for t in PLANS["standard"].targets)
    + (Study(resnet18_port_study, "resnet18-port", (3,)),),
    claims=(
        ("transfer-little-data", "3, 18", "Transfer learning generalises better than training from scratch with "
                                          "little target data", _across_targets(0)),
        ("transfer-faster", "3, 18", "Transfer learning reduces the training time a model needs", _across_targets(1)),
        ("transfer-what-to-freeze", "18", "Freeze the early layers with little data and fine-tune more as data "
                                          "grows", _across_targets(2)),
        ("transfer-port", "3", "Pretrained weights move between the frameworks unchanged", _port),
    ),
    prepare_data=ensure_source,
)

__all__ = ["PLANS", "PLUGIN", "ensure_source", "resnet18_port_study", "target_study"]
