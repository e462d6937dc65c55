"""The augmentation task's harness plug-in (seed answer 4): the ops of both libraries with fixed parameters side
by side, the ablation (none, each op alone, all) with robustness to shifted test data, a gallery of augmented
samples, the pipelines' throughput against the training step, and the claims they grade. The task's own model
is the classifier trained with every op on, which the harness exports, quantizes and times like any other."""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass

import numpy as np

from shared.data.augmentation import SHIFTS, colour_images, parity_params, shifted
from shared.specs import FRAMEWORKS
from shared.specs.augmentation import DIFFERENT_OPS, OPS, PARITY_OPS, SAME_OP_TOLERANCE

from .. import speed as S
from ..studies import MIXED, REFUTED, SUPPORTED, Study, StudyContext
from . import TaskPlugin, study_verdict

NOT_MEASURABLE, TIE = "not measurable here", "tie"
# One seed per ablation cell: a difference in accuracy counts from this margin (2 points) up.
MARGIN = 0.02
# The op that trains for each shift of the test data (shared.data.augmentation.SHIFTS).
SHIFT_OPS = {"rotated": "rotation", "darker": "color", "noisier": "noise"}


@dataclass(frozen=True)
class Plan:
    """configs: the ablation's augmentations ("none", single ops of OPS, "all": the spec's ops, the run's own model);
    gallery: images shown."""

    configs: tuple[str, ...]
    gallery: int = 3


# "all x3": every op, three times the epochs (every op at once makes a harder task, which the same epochs
# underfit: measured on the standard preset, training accuracy 0.46 against 0.94 without augmentation).
LONG = "all x3"
PLANS = {"quick": Plan(configs=("none", "rotation", "color", "all")),
         "standard": Plan(configs=("none", *OPS, "all", LONG))}


def _plan(ctx: StudyContext) -> Plan:
    return PLANS.get(ctx.profile, PLANS["standard"])


# ------------------------------------------------------------------------------------- op parity


def op_parity_study(ctx: StudyContext) -> dict:
    """Every op of PARITY_OPS with one fixed parameter set through both libraries, on the same test images."""
    images = colour_images(ctx.spec.data.image_size, 16)
    params = parity_params(ctx.spec.data.image_size, ctx.spec.augment.crop_size(ctx.spec.data.image_size))
    rows, entries = [], []
    for op in PARITY_OPS:
        out = {fw: ctx.twins[fw].task.apply_op(op, images, params[op]) for fw in FRAMEWORKS}
        diff = float(np.abs(out["torch"] - out["tensorflow"]).max())
        moved = float(np.abs(out["torch"] - images).max())
        row = {"op": op, "params": _describe(params[op]), "max_abs_diff": diff, "changed_by_op": moved,
               "tolerance": None, "verdict": "", "note": ""}
        if op in DIFFERENT_OPS:
            row["verdict"], row["note"] = "differs by design", DIFFERENT_OPS[op]
            if op == "noise":  # the same noise: what remains once Keras' output is clipped as torchvision's is
                rest = float(np.abs(out["torch"] - np.clip(out["tensorflow"], 0.0, 1.0)).max())
                row["note"] += f"; after clipping Keras' output: {rest:.2g}"
        else:
            row["tolerance"] = SAME_OP_TOLERANCE
            row["verdict"] = "same" if diff <= SAME_OP_TOLERANCE else "outside tolerance"
            entries.append({"a": "torch", "b": "tensorflow", "what": f"augmentation/{op}", "max_abs": diff,
                            "tol": SAME_OP_TOLERANCE, "ok": diff <= SAME_OP_TOLERANCE})
        rows.append(row)
    same = [r for r in rows if r["tolerance"] is not None]
    different = [r for r in rows if r["tolerance"] is None]
    verdict = SUPPORTED if all(r["verdict"] == "same" for r in same) else REFUTED
    return {"title": "The ops of torchvision.transforms.v2 and Keras' layers with the same parameters (seed answer 4)",
            "text": f"{len(images)} generated colour images (shapes on photographs) through each op's functional "
                    f"call (torchvision) and the Keras "
                    f"layer's transform_images with a transformation it did not draw, the parameters fixed (angles "
                    f"counter-clockwise, shifts in pixels, boxes top/left/size, factors as torchvision's "
                    f"multipliers). max_abs_diff: the largest difference between the twins' outputs in the "
                    f"images' [0, 1] range; changed_by_op: how far the op moved the image (the scale of the "
                    f"difference). Geometric ops match bilinear-for-bilinear with zero fill; the colour ops and "
                    f"the noise's clipping are different functions in the two libraries.",
            "columns": ["op", "params", "max_abs_diff", "changed_by_op", "tolerance", "verdict", "note"],
            "rows": rows,
            "plot": {"kind": "bars", "title": "Largest difference between the libraries per op (same parameters)",
                     "ylabel": "max |torch - keras| (image range 0-1)", "xlabel": "op",
                     "labels": [r["op"] for r in rows], "series": {"difference": [r["max_abs_diff"] for r in rows]}},
            "verdicts": [{"claim": "The two libraries' augmentation ops are interchangeable", "verdict":
                          verdict if not different else MIXED,
                          "evidence": "; ".join([f"{r['op']}: {r['max_abs_diff']:.1e} (same op)" for r in same]
                                                + [f"{r['op']}: {r['max_abs_diff']:.2f}, {r['note']}" for r in
                                                   different])}],
            "parity": entries, "images": {}}


def _describe(params: dict) -> str:
    shown = {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in params.items() if not isinstance(v, np.ndarray)}
    if any(isinstance(v, np.ndarray) for v in params.values()):
        shown["noise"] = f"array, sd {float(np.std(params['noise'])):.3f}"
    return ", ".join(f"{k} {v}" for k, v in shown.items()) or "-"


# ------------------------------------------------------------------------------------- ablation


def _config_spec(spec, config: str):
    ops = () if config == "none" else spec.augment.ops if config in ("all", LONG) else (config,)
    train = dataclasses.replace(spec.train, epochs=3 * spec.train.epochs) if config == LONG else spec.train
    return dataclasses.replace(spec, augment=dataclasses.replace(spec.augment, ops=ops), train=train)


def _cell(ctx: StudyContext, framework: str, config: str) -> dict:
    """One ablation training (cached): accuracies on the test split, the training split and each shift."""
    spec = _config_spec(ctx.spec, config)
    twin = ctx.twins[framework]

    def make() -> dict:
        if spec == ctx.spec and framework in ctx.models:  # the run's own model: its history has the time
            model, history = ctx.models[framework], ctx.cache.path(f"trained-{framework}.history.json")
            seconds = json.loads(history.read_text())[-1]["seconds"] if history.exists() else None
        else:
            model, history = twin.task.train(spec, ctx.data, model=ctx.initial_model(framework, spec),
                                             progress=False)
            seconds = history[-1]["seconds"]
        found = {"test": twin.task.evaluate(model, ctx.data.test, spec)["accuracy"],
                 "train": twin.task.evaluate(model, ctx.data.train, spec)["accuracy"], "seconds": seconds}
        for kind in SHIFTS:
            found[kind] = twin.task.evaluate(model, shifted(ctx.data.test, kind, ctx.spec.data.seed), spec)["accuracy"]
        return found

    found, cached = ctx.cache.json(f"ablation-{framework}-{config}.json", make)
    if not cached:
        ctx.printer(f"    {framework} augmentation {config}: test {found['test']:.3f}, train {found['train']:.3f}")
    return found


def ablation_study(ctx: StudyContext) -> dict:
    plan = _plan(ctx)
    cells = {(fw, c): _cell(ctx, fw, c) for fw in FRAMEWORKS for c in plan.configs}
    rows = [{"framework": fw, "augmentation": c, "test_accuracy": v["test"], "train_accuracy": v["train"],
             "gap": v["train"] - v["test"], **{f"{k}_accuracy": v[k] for k in SHIFTS}}
            for (fw, c), v in cells.items()]
    return {"title": "Ablation: no augmentation, each op alone, all together (seed answer 4)",
            "text": f"The classification network trained on {len(ctx.data.train)} images with the task's recipe "
                    f"from one initialisation and batch order, once per augmentation; test accuracy, accuracy on "
                    f"the (un-augmented) training images, their gap, and accuracy on the test images shifted: "
                    f"rotated by 20-30 degrees, darker (x0.5), noisier (sd 0.1); '{LONG}': every op with three "
                    f"times the epochs. One seed per cell: a difference counts from {MARGIN:.2f} up.",
            "columns": ["framework", "augmentation", "test_accuracy", "train_accuracy", "gap",
                        *[f"{k}_accuracy" for k in SHIFTS]],
            "rows": rows,
            "plot": {"kind": "bars", "title": "Test accuracy by augmentation", "ylabel": "test accuracy",
                     "xlabel": "augmentation", "labels": list(plan.configs),
                     "series": {fw: [cells[fw, c]["test"] for c in plan.configs] for fw in FRAMEWORKS}},
            "verdicts": _ablation_verdicts(cells, plan), "images": {}}


def _judge(gains: dict[str, float]) -> str:
    """Per framework a gain: supported where every one is above MARGIN, refuted where every one is below
    -MARGIN, tie where all are within it, else mixed."""
    outcomes = {SUPPORTED if g > MARGIN else REFUTED if g < -MARGIN else TIE for g in gains.values()}
    return outcomes.pop() if len(outcomes) == 1 else MIXED


def _ablation_verdicts(cells: dict, plan: Plan) -> list[dict]:
    # Accuracy: the best augmented configuration of each framework against none (every op at once is one of the
    # choices a user has, not the only one).
    best = {fw: max((c for c in plan.configs if c != "none"), key=lambda c: cells[fw, c]["test"]) for fw in FRAMEWORKS}
    gain = {fw: cells[fw, best[fw]]["test"] - cells[fw, "none"]["test"] for fw in FRAMEWORKS}
    gap_cut = {fw: (cells[fw, "none"]["train"] - cells[fw, "none"]["test"])
               - (cells[fw, "all"]["train"] - cells[fw, "all"]["test"]) for fw in FRAMEWORKS}
    robust, lines = {}, []
    for fw in FRAMEWORKS:
        for kind, op in SHIFT_OPS.items():
            source = op if op in plan.configs else "all"
            robust[f"{fw} {kind}"] = cells[fw, source][kind] - cells[fw, "none"][kind]
            lines.append(f"{fw} {kind}: {source} {cells[fw, source][kind]:.3f} against none "
                         f"{cells[fw, 'none'][kind]:.3f} ({robust[f'{fw} {kind}']:+.3f})")
    return [
        {"claim": "Augmentation improves accuracy on held-out data", "verdict": _judge(gain),
         "evidence": "; ".join(f"{fw}: best {best[fw]} {cells[fw, best[fw]]['test']:.3f} against none "
                               f"{cells[fw, 'none']['test']:.3f} ({gain[fw]:+.3f}), every op at once "
                               f"{cells[fw, 'all']['test']:.3f}"
                               + (f", with 3x the epochs {cells[fw, LONG]['test']:.3f}"
                                                                    if LONG in plan.configs else "")
                               for fw in FRAMEWORKS)},
        {"claim": "Augmentation reduces overfitting (the train-test gap)", "verdict": _judge(gap_cut),
         "evidence": "; ".join(f"{fw}: gap {cells[fw, 'none']['train'] - cells[fw, 'none']['test']:.3f} without, "
                               f"{cells[fw, 'all']['train'] - cells[fw, 'all']['test']:.3f} with all ops"
                               for fw in FRAMEWORKS)},
        {"claim": "Augmenting with an op makes the model robust to that change in the test data",
         "verdict": _judge(robust), "evidence": "; ".join(lines)},
    ]


# ------------------------------------------------------------------------------------- gallery


def gallery_study(ctx: StudyContext) -> dict:
    """A PNG: for a few held-out images, each op with the fixed parameters in both twins, and each framework's
    random pipeline (every op on) drawn twice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plan, size = _plan(ctx), ctx.spec.data.image_size
    images = colour_images(size, plan.gallery)
    params = parity_params(size, ctx.spec.augment.crop_size(size))
    fixed = {(fw, op): ctx.twins[fw].task.apply_op(op, images, params[op]) for fw in FRAMEWORKS for op in PARITY_OPS}
    randomised = {fw: [_random_pipeline(ctx, fw, images, draw) for draw in range(2)] for fw in FRAMEWORKS}
    columns = ["original", *PARITY_OPS, "random 1", "random 2"]
    fig, axes = plt.subplots(2 * len(images), len(columns), figsize=(1.1 * len(columns), 2.3 * len(images)))
    for i in range(len(images)):
        for j, fw in enumerate(FRAMEWORKS):
            row = axes[2 * i + j]
            pictures = [images[i], *[fixed[fw, op][i] for op in PARITY_OPS], *[r[i] for r in randomised[fw]]]
            for k, (ax, picture) in enumerate(zip(row, pictures)):
                ax.imshow(np.clip(picture, 0.0, 1.0), interpolation="nearest")
                ax.set_xticks([]), ax.set_yticks([])
                if i == 0 and j == 0:
                    ax.set_title(columns[k], fontsize=7)
                if k == 0:
                    ax.set_ylabel(fw, fontsize=7)
    fig.suptitle("Augmented samples: torchvision v2 (rows 'torch') and Keras layers (rows 'tensorflow')", fontsize=9)
    fig.tight_layout()
    path = ctx.cache.path("augmentation-gallery.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return {"title": "Gallery of augmented samples, side by side (seed answer 4)",
            "text": "Generated colour images (shapes on photographs), each in two rows, torchvision above Keras: "
                    "every op with the op-parity study's "
                    "fixed parameters (the same picture where the libraries agree), then each library's random "
                    "pipeline with every op on, drawn twice (different draws: each library samples its own).",
            "columns": [], "rows": [], "plot": None, "verdicts": [], "images": {"gallery": str(path)}}


def _random_pipeline(ctx: StudyContext, framework: str, images: np.ndarray, draw: int) -> np.ndarray:
    spec = _config_spec(ctx.spec, "all")
    twin = ctx.twins[framework]
    if framework == "torch":
        import torch

        from pytorch_impl.tensors import to_native, to_numpy

        torch.manual_seed(draw)
        run = twin.task.augment_batch(twin.task.build_pipeline(spec.augment, spec.data.image_size))
        return to_numpy(run(to_native(images)))
    run = twin.task.augment_batch(twin.task.build_pipeline(spec.augment, spec.data.image_size, seed=draw))
    return np.asarray(run(images))


# ------------------------------------------------------------------------------------- throughput


def throughput_study(ctx: StudyContext) -> dict:
    """Each framework's whole pipeline (every op on) on a training batch, images per second, against the training
    step's own rate from the ablation's runs (all ops against none)."""
    budget = S.QUICK if ctx.profile == "quick" else S.STANDARD
    batch = ctx.spec.train.batch_size
    images = np.ascontiguousarray(np.resize(ctx.data.train.images[:batch], (batch, *ctx.spec.input_shape)))
    spec = _config_spec(ctx.spec, "all")
    rows = []
    for fw in FRAMEWORKS:
        twin = ctx.twins[fw]
        pipeline = twin.task.augment_batch(twin.task.build_pipeline(spec.augment, spec.data.image_size))
        if fw == "torch":
            from pytorch_impl.tensors import to_native

            x, run = to_native(images), pipeline
        else:
            import tensorflow as tf

            compiled = tf.function(pipeline)  # as the training step runs it: traced into the graph
            x, run = tf.constant(images), lambda batch: compiled(batch).numpy()
        timing = S.time_call(run, x, budget)
        none, all_ops = _cell(ctx, fw, "none"), _cell(ctx, fw, "all")
        epochs = ctx.spec.train.epochs
        step_none = none["seconds"] / (epochs * -(-len(ctx.data.train) // batch)) if none["seconds"] else None
        step_all = all_ops["seconds"] / (epochs * -(-len(ctx.data.train) // batch)) if all_ops["seconds"] else None
        rows.append({"framework": fw, "batch": batch, "augment_ms_per_batch": timing["p50_ms"], "cv": timing["cv"],
                     "augment_images_per_s": batch / (timing["p50_ms"] / 1e3),
                     "step_ms_without": None if step_none is None else step_none * 1e3,
                     "step_ms_with": None if step_all is None else step_all * 1e3,
                     "augment_share_of_step": None if not step_all else timing["p50_ms"] / (step_all * 1e3)})
    return {"title": "Throughput of the augmentation pipelines against the training step (seed answer 4)",
            "text": "Each framework's pipeline with every op on, on one training batch, timed by the report's "
                    "rule (torchvision image by image in the training process, as a DataLoader worker would per "
                    "sample; Keras' layers on the whole batch inside a traced function, as the training step runs "
                    "them); the training step's time per batch from the ablation's runs without and with "
                    "augmentation (the ablation's runs). augment_share_of_step: the pipeline's own time as a share "
                    "of an augmented step. torchvision runs in the training process here; a DataLoader's workers "
                    "would take it off the step, at the cost of their own cores.",
            "columns": ["framework", "batch", "augment_ms_per_batch", "cv", "augment_images_per_s", "step_ms_without",
                        "step_ms_with", "augment_share_of_step"],
            "rows": rows,
            "plot": {"kind": "bars", "title": "Augmentation pipeline throughput (images/s, higher is faster)",
                     "ylabel": "images per second", "xlabel": "framework", "labels": ["pipeline"],
                     "series": {r["framework"]: [r["augment_images_per_s"]] for r in rows}},
            "verdicts": [_starving(rows)], "images": {}}


def _starving(rows: list[dict]) -> dict:
    """The training step with every op on against without, per framework (the ablation's runs): fed where a step
    takes under 1.25x as long, starved where over 1.5x."""
    claim = "Augmenting on the fly keeps the training step fed"
    if any(r["step_ms_with"] is None or r["step_ms_without"] is None for r in rows):
        return {"claim": claim, "verdict": NOT_MEASURABLE,
                "evidence": "the step times came from the cache of the run's own model, which has none"}
    lines, outcomes = [], set()
    for r in rows:
        slower = r["step_ms_with"] / r["step_ms_without"]
        outcomes.add(SUPPORTED if slower < 1.25 else REFUTED if slower > 1.5 else MIXED)
        lines.append(f"{r['framework']}: a step takes {r['step_ms_with']:.1f} ms with augmentation against "
                     f"{r['step_ms_without']:.1f} without ({slower:.2f}x); the pipeline alone "
                     f"{r['augment_images_per_s']:.0f} images/s, {r['augment_ms_per_batch']:.1f} ms a batch")
    return {"claim": claim, "verdict": outcomes.pop() if len(outcomes) == 1 else MIXED,
            "evidence": "; ".join(lines) + "; fed: a step under 1.25x as long, starved: over 1.5x"}


# ------------------------------------------------------------------------------------- claims


_study_verdict = functools.partial(study_verdict, "augmentation")  # a claim graded by one of this task's studies


PLUGIN = TaskPlugin(
    studies=(Study(op_parity_study, "op-parity", (4,)),
             Study(ablation_study, "ablation", (4,)),
             Study(gallery_study, "gallery", (4,)),
             Study(throughput_study, "throughput", (4,))),
    claims=(
        ("augmentation-accuracy", "4", "Data augmentation improves accuracy on unseen data",
         _study_verdict("ablation")),
        ("augmentation-overfitting", "4", "Data augmentation reduces overfitting", _study_verdict("ablation", 1)),
        ("augmentation-robustness", "4", "Augmentation makes models robust to rotation, lighting and noise",
         _study_verdict("ablation", 2)),
        ("augmentation-interchangeable", "4", "Both frameworks offer the same augmentation ops",
         _study_verdict("op-parity")),
        ("augmentation-throughput", "4", "On-the-fly augmentation does not slow training down",
         _study_verdict("throughput")),
    ),
)

__all__ = ["PLANS", "PLUGIN", "ablation_study", "gallery_study", "op_parity_study", "throughput_study"]
