"""The semantic-segmentation task's harness plug-in (seed answers 7, 20 and 21): the classification model's trained
body as the segmenters' backbone, five studies and the claims they grade.

* ``decoders`` (on the last model, DeepLab): the three decoders side by side in each framework, read from their
  runs' caches: parameters, latency, mIoU and boundary IoU, and mIoU against latency as a plot.
* ``skips`` (on the FCN): the same FCN without its skip connections (FCN-32s' single x8 upsampling), trained
  the same way: what the skips do to the boundary band.
* ``atrous`` (on DeepLab): the same ASPP with every rate 1 (no dilation): same weights, same output stride,
  a narrower view.
* ``horses`` (on the FCN): the FCN on a real binary mask, scikit-image's horse, in both frameworks.
* ``masks`` (every model): held-out scenes with the truth and each twin's prediction.

One training per configuration and framework: a difference counts when it exceeds MARGIN in both frameworks
(the frameworks' own gap on one configuration, measured at 0.01 or less, is the noise it must beat).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from shared import data as D
from shared.metrics.semantic_segmentation import segmentation_metrics
from shared.specs import FRAMEWORKS, get_spec, run_name

from .. import backends as B
from .. import speed as S
from ..studies import EVERY_RUN, MIXED, REFUTED, SUPPORTED, Study, StudyContext
from . import NOT_MEASURABLE, TaskPlugin, study_verdict
from .classification import trained_model

TASK = "semantic_segmentation"
MODELS = {None: "FCN", "unet": "U-Net", "deeplab": "DeepLab"}
MARGIN = 0.02         # a gain counts when larger than this in both frameworks (one training each)
SAME_COST = 1.25      # "no extra cost": the atrous model's latency within this factor of the undilated one's
GALLERY_IMAGES = 4
QUALITY_TARGET = 0.80  # the best model's held-out mIoU, per framework (the target)


@dataclass(frozen=True)
class HorseSet:
    n_train: int
    n_val: int
    n_test: int
    epochs: int


@dataclass(frozen=True)
class Plan:
    """frameworks: where the studies train their own models; horses: the horse study's set and epochs."""

    frameworks: tuple[str, ...]
    horses: HorseSet


PLANS = {"quick": Plan(frameworks=FRAMEWORKS, horses=HorseSet(n_train=256, n_val=16, n_test=64, epochs=2)),
         "standard": Plan(frameworks=FRAMEWORKS, horses=HorseSet(n_train=1000, n_val=50, n_test=200, epochs=5))}


# ------------------------------------------------------------------------------------- pretrained body


def ensure_body(spec, data, preset: str, cache_of, printer=print):
    """``TaskPlugin.prepare_data``: the classification run's trained model must be in its cache before the train
    stage reads its body (trained there now when that run has not run); the data itself is complete."""
    if spec.body_from is not None:
        trained_model(preset, cache_of, printer)
    return data


# ------------------------------------------------------------------------------------- helpers


def _parameters(twin, model) -> int:
    """Learned parameters (canonical tensors less BatchNorm's running statistics)."""
    return int(sum(v.size for k, v in twin.bridge.export_weights(model).items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))))


def _scores(ctx: StudyContext, framework: str, model, spec) -> dict:
    logits = ctx.twins[framework].task.predict(model, ctx.data.test.images)["logits"]
    m = segmentation_metrics(logits, ctx.data.test.masks, spec.model.num_classes)
    return {"miou": m["miou"], "boundary_iou": m["boundary_iou"], "pixel_accuracy": m["pixel_accuracy"]}


def _latency(ctx: StudyContext, framework: str, model, spec, batch: int) -> float:
    """p50 ms of the framework's graph runner (torch eager in inference mode, tf.function), one thread."""
    budget = S.QUICK if ctx.profile == "quick" else S.STANDARD
    runner = B.make_runner(framework, {framework: model}, {}, spec, 1)
    images = np.resize(ctx.data.test.images[:batch], (batch, *spec.input_shape)).astype(np.float32)
    return S.time_call(runner.run, runner.to_input(images), budget)["p50_ms"]


def _trained(ctx: StudyContext, framework: str, spec, name: str) -> dict:
    """Held-out scores and training seconds of ``spec`` trained in ``framework`` from the run's shared
    initialisation and batches (cached in the run's folder)."""
    def make() -> dict:
        model, history = ctx.twins[framework].task.train(spec, ctx.data, model=ctx.initial_model(framework, spec),
                                                         progress=False)
        return {**_scores(ctx, framework, model, spec), "seconds": history[-1]["seconds"],
                "parameters": _parameters(ctx.twins[framework], model),
                "p50_ms_b32": _latency(ctx, framework, model, spec, 32)}

    found, cached = ctx.cache.json(f"{name}-{framework}.json", make)
    if not cached:
        ctx.printer(f"    {framework} {name}: mIoU {found['miou']:.3f}, boundary IoU {found['boundary_iou']:.3f}")
    return found


def _own(ctx: StudyContext, framework: str, name: str) -> dict:
    """The run's own trained model in ``framework``: scores, parameters and batch-32 latency (cached)."""
    def make() -> dict:
        model = ctx.models[framework]
        return {**_scores(ctx, framework, model, ctx.spec), "parameters": _parameters(ctx.twins[framework], model),
                "p50_ms_b32": _latency(ctx, framework, model, ctx.spec, 32)}

    return ctx.cache.json(f"{name}-{framework}.json", make)[0]


def _gain_verdict(gains: dict[str, float]) -> str:
    """SUPPORTED when every framework gains more than MARGIN, REFUTED when none does, MIXED otherwise."""
    wins = [g > MARGIN for g in gains.values()]
    return SUPPORTED if all(wins) else REFUTED if not any(wins) else MIXED


# ------------------------------------------------------------------------------------- studies


def skips_study(ctx: StudyContext) -> dict:
    """The FCN with skip connections from every stage (the run's model) against the same FCN without them."""
    plain = dataclasses.replace(ctx.spec, model=dataclasses.replace(ctx.spec.model, skips=0))
    rows, gains, lines = [], {}, []
    for fw in _plan(ctx).frameworks:
        if fw not in ctx.models:
            continue
        with_skips = _own(ctx, fw, f"fcn-skips{ctx.spec.model.skips}")
        without = _trained(ctx, fw, plain, "fcn-skips0")
        for skips, r in ((0, without), (ctx.spec.model.skips, with_skips)):
            rows.append({"framework": fw, "skips": skips, "parameters": r["parameters"], "miou": r["miou"],
                         "boundary_iou": r["boundary_iou"], "pixel_accuracy": r["pixel_accuracy"],
                         "p50_ms_b32": r["p50_ms_b32"]})
        gains[fw] = with_skips["boundary_iou"] - without["boundary_iou"]
        lines.append(f"{fw}: boundary IoU {without['boundary_iou']:.3f} without skips, {with_skips['boundary_iou']:.3f} "
                     f"with ({gains[fw]:+.3f}); mIoU {without['miou']:.3f} -> {with_skips['miou']:.3f}")
    verdict = _gain_verdict(gains) if gains else NOT_MEASURABLE
    return {"title": "Skip connections and boundaries (seed answer 7)",
            "text": f"The FCN as the report trains it, with the scores of every shallower stage added on the way up "
                    f"(skips {ctx.spec.model.skips}), against the same network whose deepest scores go straight to "
                    f"full size through one learned x{ctx.spec.model.output_stride} upsampling (skips 0, FCN-32s' "
                    f"coarse output), trained from the same body with the same recipe. Boundary IoU scores the "
                    f"2-pixel band along each class region's edge (shared/metrics/semantic_segmentation.py); a "
                    f"gain counts beyond {MARGIN} in both frameworks.",
            "columns": ["framework", "skips", "parameters", "miou", "boundary_iou", "pixel_accuracy", "p50_ms_b32"],
            "rows": rows,
            "plot": {"kind": "bars", "title": "FCN with and without skip connections (held-out scenes)",
                     "ylabel": "IoU", "xlabel": "metric (series: framework and skip count)",
                     "labels": ["mIoU", "boundary IoU"],
                     "series": {f"{r['framework']} skips {r['skips']}": [r["miou"], r["boundary_iou"]] for r in rows}},
            "verdicts": [{"claim": "Skip connections combining shallow and deep features sharpen object boundaries",
                          "verdict": verdict, "evidence": "; ".join(lines) or "no trained model in this run"}],
            "images": {}}


def atrous_study(ctx: StudyContext) -> dict:
    """The DeepLab-style model (the run's, dilated ASPP) against the same model with every rate 1."""
    rates = ctx.spec.model.atrous_rates
    plain = dataclasses.replace(ctx.spec, model=dataclasses.replace(ctx.spec.model, atrous_rates=(1,) * len(rates)))
    rows, gains, lines, costs = [], {}, [], []
    for fw in _plan(ctx).frameworks:
        if fw not in ctx.models:
            continue
        dilated = _own(ctx, fw, "deeplab-atrous")
        undilated = _trained(ctx, fw, plain, "deeplab-rate1")
        for label, r in (("1" + ", 1" * (len(rates) - 1), undilated), (", ".join(map(str, rates)), dilated)):
            rows.append({"framework": fw, "rates": label, "parameters": r["parameters"], "miou": r["miou"],
                         "boundary_iou": r["boundary_iou"], "p50_ms_b32": r["p50_ms_b32"]})
        gains[fw] = dilated["miou"] - undilated["miou"]
        ratio = dilated["p50_ms_b32"] / undilated["p50_ms_b32"]
        costs.append(ratio <= SAME_COST and dilated["parameters"] == undilated["parameters"])
        lines.append(f"{fw}: mIoU {undilated['miou']:.3f} at rate 1, {dilated['miou']:.3f} at rates {rates} "
                     f"({gains[fw]:+.3f}); same parameters ({dilated['parameters']:,}), latency x{ratio:.2f}, "
                     f"output stride {ctx.spec.model.output_stride} both")
    verdict = NOT_MEASURABLE if not gains else _gain_verdict(gains) if all(costs) else MIXED
    cells = ctx.spec.data.image_size // ctx.spec.model.output_stride
    outside = ", ".join(f"{_padding_share(cells, r):.0%} at rate {r}" for r in rates)
    return {"title": "Atrous convolution: context at the same resolution (seed answer 21)",
            "text": f"DeepLab's ASPP as the report trains it (3x3 branches dilated {rates}) against the same ASPP "
                    f"with every rate 1: the same weights and the same stride-{ctx.spec.model.output_stride} map, a "
                    f"view of 3 instead of up to {2 * max(rates) + 1} cells per branch. Trained from the same body "
                    f"with the same recipe; a gain counts beyond {MARGIN} in both frameworks, at no more than "
                    f"x{SAME_COST} the latency. The map here is {cells}x{cells} cells; of a dilated branch's 8 "
                    f"outer taps, the share that lands outside it (in the zero padding), over every position: "
                    f"{outside}.",
            "columns": ["framework", "rates", "parameters", "miou", "boundary_iou", "p50_ms_b32"],
            "rows": rows,
            "plot": {"kind": "bars", "title": "DeepLab-style ASPP with and without dilation (held-out scenes)",
                     "ylabel": "mIoU", "xlabel": "dilation rates of the ASPP's 3x3 branches", "labels": [r for r in dict.fromkeys(row["rates"] for row in rows)],
                     "series": {fw: [r["miou"] for r in rows if r["framework"] == fw]
                                for fw in dict.fromkeys(row["framework"] for row in rows)}},
            "verdicts": [{"claim": "Atrous convolution widens the context and improves accuracy at no extra "
                                   "resolution cost", "verdict": verdict,
                          "evidence": "; ".join(lines) or "no trained model in this run"}],
            "images": {}}


def _padding_share(cells: int, rate: int) -> float:
    """The share of a 3x3 conv's 8 outer taps, dilated by ``rate``, that fall outside a ``cells`` x ``cells`` map,
    over every output position."""
    positions = np.arange(cells)
    offsets = [(dy, dx) for dy in (-rate, 0, rate) for dx in (-rate, 0, rate) if dy or dx]
    inside = [((positions[:, None] + dy >= 0) & (positions[:, None] + dy < cells)
               & (positions[None, :] + dx >= 0) & (positions[None, :] + dx < cells)).mean() for dy, dx in offsets]
    return 1.0 - float(np.mean(inside))


def decoders_study(ctx: StudyContext) -> dict:
    """FCN, U-Net and DeepLab side by side in each framework, from their runs' trained weights."""
    from ..pipeline import run_cache

    rows, found = [], {}
    for variant, label in MODELS.items():
        spec = get_spec(TASK, ctx.preset, variant)
        cache = run_cache(ctx.cache.dir.parent, run_name(TASK, variant), ctx.preset)
        for fw in FRAMEWORKS:
            path = cache.path(f"trained-{fw}.safetensors")
            if not path.exists():
                continue
            twin = ctx.twins[fw]

            def make() -> dict:
                model = twin.bridge.load_weights(twin.task.build_model(spec), path)
                return {**_scores(ctx, fw, model, spec), "parameters": _parameters(twin, model),
                        "p50_ms_b1": _latency(ctx, fw, model, spec, 1),
                        "p50_ms_b32": _latency(ctx, fw, model, spec, 32)}

            found[fw, label] = ctx.cache.json(f"decoder-{label}-{fw}.json", make)[0]
            rows.append({"framework": fw, "model": label, **found[fw, label]})
    return {"title": "FCN, U-Net and DeepLab: accuracy against cost (seed answers 7, 20, 21)",
            "text": f"Each decoder on the same backbone (the classification model's trained body), trained with the "
                    f"same recipe in each framework (their own sections have every backend and export); "
                    f"held-out scenes. Latency: each framework's graph runner, one thread. Target for the best "
                    f"model: mIoU >= {QUALITY_TARGET} in each framework.",
            "columns": ["framework", "model", "parameters", "miou", "boundary_iou", "pixel_accuracy", "p50_ms_b1",
                        "p50_ms_b32"],
            "rows": rows,
            "plot": {"kind": "points", "title": "mIoU against batch-32 latency, per decoder and framework",
                     "xlabel": "p50 latency at batch 32, ms", "ylabel": "held-out mIoU",
                     "labels": list(MODELS.values()),
                     "series": {fw: [None if (fw, m) not in found else [found[fw, m]["p50_ms_b32"], found[fw, m]["miou"]]
                                     for m in MODELS.values()] for fw in FRAMEWORKS}},
            "verdicts": [_decoder_detail(found), _twins_agree(found)],
            "images": {}}


def _decoder_detail(found: dict) -> dict:
    claim = "An encoder-decoder that upsamples step by step with skips recovers detail a coarse output loses"
    lines, gains = [], {}
    for fw in FRAMEWORKS:
        if (fw, "U-Net") in found and (fw, "DeepLab") in found:
            u, d = found[fw, "U-Net"], found[fw, "DeepLab"]
            gains[fw] = u["boundary_iou"] - d["boundary_iou"]
            fcn = found.get((fw, "FCN"), {}).get("boundary_iou", float("nan"))
            lines.append(f"{fw}: boundary IoU U-Net {u['boundary_iou']:.3f}, FCN {fcn:.3f}, DeepLab (one bilinear "
                         f"resize) {d['boundary_iou']:.3f}; mIoU U-Net {u['miou']:.3f}, DeepLab {d['miou']:.3f}")
    return {"claim": claim, "verdict": _gain_verdict(gains) if gains else NOT_MEASURABLE,
            "evidence": "; ".join(lines) or "the U-Net or DeepLab run did not finish"}


def _twins_agree(found: dict) -> dict:
    claim = "Both frameworks train the same segmentation quality from the same start"
    lines, ok = [], []
    for label in MODELS.values():
        if all((fw, label) in found for fw in FRAMEWORKS):
            a, b = (found[fw, label]["miou"] for fw in FRAMEWORKS)
            ok.append(abs(a - b) <= MARGIN)
            lines.append(f"{label}: mIoU {a:.3f} (torch) vs {b:.3f} (tensorflow), gap {abs(a - b):.3f}")
    best = {fw: max((v["miou"] for (f, _), v in found.items() if f == fw), default=None) for fw in FRAMEWORKS}
    lines += [f"best model {fw}: mIoU {v:.3f} (target {QUALITY_TARGET})" for fw, v in best.items() if v is not None]
    verdict = NOT_MEASURABLE if not ok else SUPPORTED if all(ok) else REFUTED if not any(ok) else MIXED
    return {"claim": claim, "verdict": verdict, "evidence": "; ".join(lines) or "no model trained in both"}


def masks_study(ctx: StudyContext) -> dict:
    """A PNG: held-out scenes, their class maps and each twin's prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    n = min(GALLERY_IMAGES, len(ctx.data.test))
    images, truth = ctx.data.test.images[:n], ctx.data.test.masks[:n]
    k = ctx.spec.model.num_classes
    predicted = {fw: ctx.twins[fw].task.predict(ctx.models[fw], images)["logits"].argmax(-1)
                 for fw in FRAMEWORKS if fw in ctx.models}
    colours = ListedColormap(["#000000", "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4",
                              "#46f0f0", "#f032e6"][:max(k, 2)])
    columns = ["image", "truth", *[f"{fw}" for fw in predicted]]
    fig, axes = plt.subplots(n, len(columns), figsize=(1.5 * len(columns), 1.5 * n), squeeze=False)
    for i in range(n):
        pictures = [images[i], truth[i], *[p[i] for p in predicted.values()]]
        for j, (ax, picture) in enumerate(zip(axes[i], pictures)):
            if j == 0:
                ax.imshow(np.clip(picture, 0, 1), interpolation="nearest")
            else:
                ax.imshow(picture, cmap=colours, vmin=0, vmax=colours.N - 1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(columns[j], fontsize=8)
    model = MODELS.get(None if ctx.spec.model.arch == "fcn" else ctx.spec.model.arch, ctx.spec.model.arch)
    fig.suptitle(f"{model}: held-out scenes, truth and each twin's prediction", fontsize=9)
    names = getattr(ctx.data, "class_names", ())[:k]
    fig.legend(handles=[Patch(facecolor=colours(i), edgecolor="grey", label=name) for i, name in enumerate(names)],
               loc="lower center", ncol=min(len(names), 4), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * ((len(names) + 3) // 4), 1, 1))
    path = ctx.cache.path(f"masks-{ctx.spec.model.arch}.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    agree = {fw: float((p == truth).mean()) for fw, p in predicted.items()}
    twins = float((predicted["torch"] == predicted["tensorflow"]).mean()) if len(predicted) == 2 else None
    return {"title": f"Predicted masks, {model} (seed answer 20)",
            "text": f"The first {n} held-out scenes: the image, its class map (the legend names the colours) and "
                    f"each framework's prediction. Pixels right on these images: "
                    + ", ".join(f"{fw} {v:.3f}" for fw, v in agree.items())
                    + (f"; the twins agree on {twins:.3f} of the pixels." if twins is not None else "."),
            "columns": [], "rows": [], "plot": None, "verdicts": [], "images": {"masks": str(path)}}


def horses_study(ctx: StudyContext) -> dict:
    """The FCN trained on a real binary mask: scikit-image's horse silhouette on textures, in both frameworks."""
    horses = _plan(ctx).horses
    data_spec = dataclasses.replace(ctx.spec.data, dataset="horses", n_train=horses.n_train, n_val=horses.n_val,
                                    n_test=horses.n_test)
    spec = dataclasses.replace(ctx.spec, data=data_spec, model=dataclasses.replace(ctx.spec.model, num_classes=2),
                               train=dataclasses.replace(ctx.spec.train, epochs=horses.epochs))
    data = D.load(spec)
    rows, predictions = [], {}
    for fw in _plan(ctx).frameworks:
        twin = ctx.twins[fw]

        def make() -> dict:
            model, history = twin.task.train(spec, data, model=ctx.initial_model(fw, spec), progress=False)
            logits = twin.task.predict(model, data.test.images)["logits"]
            np.save(ctx.cache.path(f"horses-{fw}.npy"), logits.argmax(-1).astype(np.uint8))
            m = segmentation_metrics(logits, data.test.masks, 2)
            return {"horse_iou": m["per_class_iou"][1], "miou": m["miou"], "boundary_iou": m["boundary_iou"],
                    "pixel_accuracy": m["pixel_accuracy"], "seconds": history[-1]["seconds"]}

        found, cached = ctx.cache.json(f"horses-{fw}.json", make)
        if not cached:
            ctx.printer(f"    {fw} horses: IoU {found['horse_iou']:.3f}")
        rows.append({"framework": fw, **found})
        predictions[fw] = np.load(ctx.cache.path(f"horses-{fw}.npy"))
    agree = float((predictions["torch"] == predictions["tensorflow"]).mean()) if len(predictions) == 2 else None
    return {"title": "A real binary mask: scikit-image's horse (seed answer 20)",
            "text": f"The FCN with the same body, two output classes, trained {horses.epochs} epochs on "
                    f"{horses.n_train:,} images of scikit-image's horse silhouette (scaled, mirrored, placed at random, "
                    f"filled with one texture over another) in each framework from the same start; "
                    f"{horses.n_test} held-out images. Separating a figure from its background, as background "
                    f"removal does."
                    + (f" The twins' masks agree on {agree:.3f} of the pixels." if agree is not None else ""),
            "columns": ["framework", "horse_iou", "miou", "boundary_iou", "pixel_accuracy", "seconds"],
            "rows": rows, "plot": None, "verdicts": [], "images": {}}


def _plan(ctx: StudyContext) -> Plan:
    return PLANS.get(ctx.profile, PLANS["standard"])


PLUGIN = TaskPlugin(
    studies=(Study(skips_study, "skips", (7,)), Study(horses_study, "horses", (20,)), Study(atrous_study, "atrous", (21,), runs=("deeplab",)),
             Study(decoders_study, "decoders", (7, 20, 21), runs=("deeplab",)),
             Study(masks_study, "masks", (20,), runs=EVERY_RUN)),
    claims=(
        ("segmentation-skips", "7", "Skip connections that combine shallow and deep features sharpen the boundaries "
         "of segmented objects", study_verdict(run_name(TASK), "skips")),
        ("segmentation-encoder-decoder", "7, 21", "An encoder-decoder (U-Net) recovers spatial detail that "
         "upsampling a coarse map loses", study_verdict(run_name(TASK, "deeplab"), "decoders", 0)),
        ("segmentation-atrous", "21", "Atrous (dilated) convolution captures wider context and improves accuracy "
         "without lowering the resolution", study_verdict(run_name(TASK, "deeplab"), "atrous")),
        ("segmentation-twins", "20", "PyTorch and TensorFlow train segmenters of the same quality",
         study_verdict(run_name(TASK, "deeplab"), "decoders", 1)),
    ),
    prepare_data=ensure_body,
)

__all__ = ["PLUGIN", "ensure_body"]
