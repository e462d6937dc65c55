"""The OCR task's harness plug-in (seed answers 8 and 25): how two backends' transcriptions are compared (L5: the
same strings), four studies and the claims they grade.

* ``challenges`` (answers 8, 25): each twin's CER on the clean lines and on the same texts with one challenge
  each (fonts, sizes, rotation, slant, noise, blur, low contrast, uneven background, touching characters).
* ``decoding`` (answer 8's post-processing): greedy against beam search in each framework (TensorFlow's
  ``ctc_beam_search_decoder``, torchaudio's flashlight decoder), and the two beam decoders on the same logits.
* ``preprocessing`` (answers 8, 25): the report's trained CRNN fine-tuned and tested with each preprocessing
  option added to (or, for normalisation and grayscale, taken from) the report's pipeline, the same budget each.
* ``samples``: held-out lines with the truth and both twins' transcriptions, errors marked.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from shared import data as D
from shared.metrics.ocr import line_errors, text_metrics
from shared.specs import FRAMEWORKS, run_name

from ..parity import entry
from ..studies import MIXED, REFUTED, SUPPORTED, Study, StudyContext
from . import NOT_MEASURABLE, TaskPlugin, study_verdict

TASK = "ocr"
QUALITY_TARGET = 0.03    # CER on held-out lines, per framework (the target)
HURT_MARGIN = 0.01       # a challenge hurts when it raises the CER over the clean lines' by more than this
GAIN_MARGIN = 0.005      # a decoder or preprocessing option helps when it lowers the CER by more than this
TWINS_MARGIN = 0.01      # the frameworks' CER within this
SAMPLE_LINES = 8


@dataclass(frozen=True)
class Plan:
    """The preprocessing study's frameworks and fine-tuning budget: training lines and epochs (the report's own
    pipeline is fine-tuned with the same budget, as the baseline)."""

    frameworks: tuple[str, ...]
    n_train: int
    epochs: int


PLANS = {"quick": Plan(frameworks=("torch",), n_train=512, epochs=1),
         "standard": Plan(frameworks=("torch",), n_train=8000, epochs=1)}


# ------------------------------------------------------------------------------------- L5 comparison

def compare_texts(spec, name_a: str, a: list[str], name_b: str, b: list[str], what: str = "postprocess",
                  min_score: float = 0.0) -> list[dict]:
    """Two backends' transcriptions of the same lines: ``<what>/texts``, the Levenshtein distance of each pair of
    strings (rapidfuzz, which jiwer computes with), which must be 0 everywhere."""
    from rapidfuzz.distance import Levenshtein

    if len(a) != len(b):
        return [{"a": name_a, "b": name_b, "what": f"{what}/texts", "max_abs": float("inf"), "tol": 0.0,
                 "ok": False, "error": f"{len(a)} lines vs {len(b)}"}]
    distances = np.array([Levenshtein.distance(x, y) for x, y in zip(a, b)], np.float64)
    return [entry(name_a, name_b, f"{what}/texts", np.zeros_like(distances), distances, 0.0, reference=np.ones(1))]


# ------------------------------------------------------------------------------------- helpers

def _read(ctx: StudyContext, framework: str, images: np.ndarray, decoder: str = "greedy", model=None) -> list[str]:
    return ctx.twins[framework].task.read(model or ctx.models[framework], images, ctx.spec, decoder)


def _plan(ctx: StudyContext) -> Plan:
    return PLANS.get(ctx.profile, PLANS["standard"])


# ------------------------------------------------------------------------------------- studies

def challenges_study(ctx: StudyContext) -> dict:
    """CER and WER of each twin's trained model on the clean lines and on each challenge's lines."""
    sets = ctx.data.challenges
    found, held_out = {}, {}
    for fw in FRAMEWORKS:
        if fw not in ctx.models:
            continue

        def make() -> dict:
            return {"sets": {name: text_metrics(_read(ctx, fw, split.images), split.texts)
                             for name, split in sets.items()},
                    "test": text_metrics(_read(ctx, fw, ctx.data.test.images), ctx.data.test.texts)}

        result = ctx.cache.json(f"challenges-{fw}.json", make)[0]
        found[fw], held_out[fw] = result["sets"], result["test"]
    rows = [{"challenge": name, **{f"{fw}_{m}": found[fw][name][m] for fw in found for m in ("cer", "wer")}}
            for name in sets]
    lines, hurts = [], {}
    for fw, scores in found.items():
        clean = scores["clean"]["cer"]
        ranked = sorted(((s["cer"] - clean, name) for name, s in scores.items() if name != "clean"), reverse=True)
        hurts[fw] = {name: gain > HURT_MARGIN for gain, name in ranked}
        lines.append(f"{fw}: CER clean {clean:.4f}; " + ", ".join(f"{name} {gain:+.4f}" for gain, name in ranked))
    claim_hurt = "Variations in font, size and orientation, noise, blur, contrast, background clutter and touching " \
                 "characters make text harder to recognise"
    if hurts:
        every = [all(h.values()) for h in hurts.values()]
        some = [any(h.values()) for h in hurts.values()]
        verdict = SUPPORTED if all(every) else MIXED if any(some) else REFUTED
        harmless = sorted({name for h in hurts.values() for name, hurt in h.items() if not hurt})
        if harmless:
            lines.append(f"within {HURT_MARGIN} of the clean CER in at least one framework: {', '.join(harmless)}")
    else:
        verdict = NOT_MEASURABLE
    claim_segment = "Recognising a text line needs its characters segmented first"
    seg_lines, seg_ok = [], []
    for fw, scores in found.items():
        cer = held_out[fw]["cer"]
        seg_lines.append(f"{fw}: the CRNN segments nothing (CTC aligns the whole line) and reads the held-out lines "
                         f"at CER {cer:.4f} (target {QUALITY_TARGET}); touching, overlapping characters, where "
                         f"segmentation itself fails, {scores['touching']['cer']:.4f} (clean "
                         f"{scores['clean']['cer']:.4f})")
        seg_ok.append(cer <= QUALITY_TARGET)
    seg_verdict = NOT_MEASURABLE if not seg_ok else REFUTED if all(seg_ok) else MIXED if any(seg_ok) else SUPPORTED
    seg_lines.append("refuted where reading without segmentation meets the quality target")
    return {"title": "What makes text hard to read (seed answers 8 and 25)",
            "text": f"{len(next(iter(sets.values()))):,} held-out lines, drawn once clean (DejaVu Sans at one size, "
                    f"nothing else) and once with each challenge alone on the same texts (shared/data/ocr.py). "
                    f"Each twin's trained CRNN, greedy decoding. A challenge hurts when it raises the CER by more "
                    f"than {HURT_MARGIN}.",
            "columns": ["challenge", *[f"{fw}_{m}" for fw in found for m in ("cer", "wer")]],
            "rows": rows,
            "plot": {"kind": "bars", "title": "CER per challenge (held-out lines, one challenge each)",
                     "ylabel": "CER", "xlabel": "challenge", "labels": list(sets),
                     "series": {fw: [found[fw][name]["cer"] for name in sets] for fw in found}},
            "verdicts": [{"claim": claim_hurt, "verdict": verdict, "evidence": "; ".join(lines) or "no model"},
                         {"claim": claim_segment, "verdict": seg_verdict, "evidence": "; ".join(seg_lines)}],
            "images": {}}


def decoding_study(ctx: StudyContext) -> dict:
    """Greedy and beam search in each framework on the held-out split; the beam decoders on the same logits."""
    test = ctx.data.test
    width = ctx.spec.decode.beam_width
    found, agreement = {}, {}
    for fw in FRAMEWORKS:
        if fw not in ctx.models:
            continue

        def make() -> dict:
            logits = ctx.twins[fw].task.predict(ctx.models[fw], test.images)["logits"]
            decoded = {f"{side}-beam": ctx.twins[side].task.beam_decode(logits, width) for side in FRAMEWORKS}
            decoded["greedy"] = ctx.twins[fw].task.greedy_decode(logits)
            other = next(s for s in FRAMEWORKS if s != fw)
            return {"greedy": text_metrics(decoded["greedy"], test.texts),
                    "beam": text_metrics(decoded[f"{fw}-beam"], test.texts),
                    "beam_other": text_metrics(decoded[f"{other}-beam"], test.texts),
                    "beams_agree": float(np.mean([a == b for a, b in zip(*(decoded[f"{s}-beam"] for s in FRAMEWORKS))])),
                    "beam_vs_greedy_changed": float(np.mean([a != b for a, b in
                                                             zip(decoded[f"{fw}-beam"], decoded["greedy"])]))}

        found[fw] = ctx.cache.json(f"decoding-{fw}.json", make)[0]
        agreement[fw] = found[fw]["beams_agree"]
    rows = [{"framework": fw, "decoder": decoder, "cer": r[key]["cer"], "wer": r[key]["wer"],
             "line_accuracy": r[key]["line_accuracy"]}
            for fw, r in found.items()
            for decoder, key in (("greedy", "greedy"), (f"{fw} beam {width}", "beam"),
                                 (f"{next(s for s in FRAMEWORKS if s != fw)} beam {width} (same logits)", "beam_other"))]
    lines, gains = [], {}
    for fw, r in found.items():
        gains[fw] = r["greedy"]["cer"] - r["beam"]["cer"]
        lines.append(f"{fw}: CER greedy {r['greedy']['cer']:.4f}, beam {r['beam']['cer']:.4f} ({-gains[fw]:+.4f}); "
                     f"beam changed {r['beam_vs_greedy_changed']:.1%} of the lines; TensorFlow's and torchaudio's "
                     f"beams agree on {r['beams_agree']:.1%} of the lines from its logits")
    wins = [g > GAIN_MARGIN for g in gains.values()]
    verdict = NOT_MEASURABLE if not wins else SUPPORTED if all(wins) else REFUTED if not any(wins) else MIXED
    return {"title": "Greedy against beam-search decoding (seed answer 8)",
            "text": f"The held-out split ({len(test):,} lines) decoded from each twin's logits: best path (greedy) and "
                    f"a prefix beam search of width {width} without a language model, in the twin's framework and, on "
                    f"the same logits, in the other's (tf.nn.ctc_beam_search_decoder; torchaudio's ctc_decoder with "
                    f"log-add merging). A decoder helps when it lowers the CER by more than {GAIN_MARGIN}.",
            "columns": ["framework", "decoder", "cer", "wer", "line_accuracy"],
            "rows": rows,
            "plot": None,
            "verdicts": [{"claim": "Decoding beyond the per-step best guess (beam search) refines the transcriptions",
                          "verdict": verdict, "evidence": "; ".join(lines) or "no model"}],
            "images": {}}


PIPELINES = {"report (grayscale, normalise)": ("grayscale", "normalise"),
             "without normalise": ("grayscale",),
             "+ binarise": ("grayscale", "normalise", "binarise"),
             "+ height": ("grayscale", "normalise", "height"),
             "+ deskew": ("grayscale", "normalise", "deskew"),
             "colour (no grayscale)": ("normalise",)}
LUMA = (0.299, 0.587, 0.114)  # shared/data/ocr.py's grayscale weights


def start_weights(tensors: dict, spec, channels: int) -> dict:
    """The report model's canonical weights for a pipeline whose images have ``channels`` channels: a colour
    model's first convolution gets the grayscale kernel times each channel's luma weight, so that it starts out
    computing exactly what the grayscale model computes."""
    key = "features.0.0.weight"
    if tensors[key].shape[1] == channels:
        return tensors
    if channels != 3 or tensors[key].shape[1] != 1:
        raise ValueError(f"{key}: expected a 1-channel kernel to widen to 3 channels; received shape "
                         f"{tensors[key].shape} for {channels} channels")
    return {**tensors, key: tensors[key] * np.asarray(LUMA, np.float32)[None, :, None, None]}


def preprocessing_study(ctx: StudyContext) -> dict:
    """The report's trained CRNN fine-tuned with each pipeline of PIPELINES (the report's own pipeline too, as the
    baseline), the same lines and epochs for each, then read through that pipeline."""
    plan = _plan(ctx)
    rows, found = [], {}
    for label, options in PIPELINES.items():
        data_spec = dataclasses.replace(ctx.spec.data, preprocess=options, n_train=plan.n_train)
        spec = dataclasses.replace(ctx.spec, data=data_spec, train=dataclasses.replace(ctx.spec.train,
                                                                                        epochs=plan.epochs))
        for fw in plan.frameworks:
            if fw not in ctx.models:
                continue

            def make() -> dict:
                twin = ctx.twins[fw]
                data = D.load(spec)
                model = twin.task.build_model(spec)
                twin.bridge.import_weights(model, start_weights(twin.bridge.export_weights(ctx.models[fw]), spec,
                                                                spec.input_shape[2]))
                model, history = twin.task.train(spec, data, model=model, progress=False)
                test = text_metrics(twin.task.read(model, data.test.images, spec), data.test.texts)
                by_set = {name: text_metrics(twin.task.read(model, s.images, spec), s.texts)["cer"]
                          for name, s in data.challenges.items()}
                return {"cer": test["cer"], "wer": test["wer"], "seconds": history[-1]["seconds"],
                        "challenge_cer": by_set}

            key = "-".join(options)
            found[fw, label], cached = ctx.cache.json(f"preprocess-{key}-{fw}.json", make)
            if not cached:
                ctx.printer(f"    {fw} {label}: CER {found[fw, label]['cer']:.4f}")
            r = found[fw, label]
            rows.append({"framework": fw, "pipeline": label, "cer": r["cer"], "wer": r["wer"],
                         "worst_challenge": max(r["challenge_cer"], key=r["challenge_cer"].get),
                         "worst_challenge_cer": max(r["challenge_cer"].values()), "train_seconds": r["seconds"]})
    base = next(iter(PIPELINES))
    lines, helped = [], []
    for fw in (f for f in plan.frameworks if (f, base) in found):
        ref = found[fw, base]["cer"]
        for label in PIPELINES:
            if label == base:
                continue
            # The report's pipeline against the ones without normalisation or without grayscale measures those
            # two options themselves; the others add an option to it.
            removed = label in ("without normalise", "colour (no grayscale)")
            gain = (found[fw, label]["cer"] - ref) if removed else (ref - found[fw, label]["cer"])
            what = {"without normalise": "normalise", "colour (no grayscale)": "grayscale"}.get(label, label[2:])
            helped.append(gain > GAIN_MARGIN)
            lines.append(f"{fw} {what}: CER {ref if removed else found[fw, label]['cer']:.4f} with it, "
                         f"{found[fw, label]['cer'] if removed else ref:.4f} without "
                         f"({'helps' if gain > GAIN_MARGIN else 'no help'}, {gain:+.4f})")
    verdict = NOT_MEASURABLE if not helped else SUPPORTED if all(helped) else REFUTED if not any(helped) else MIXED
    return {"title": "Preprocessing: which options help (seed answers 8 and 25)",
            "text": f"The report's trained CRNN (in {', '.join(plan.frameworks)}) fine-tuned for {plan.epochs} "
                    f"epoch(s) on {plan.n_train:,} lines through each preprocessing pipeline, the report's own "
                    f"pipeline included as the baseline, and read through the same pipeline on the held-out lines. "
                    f"The report's pipeline is grayscale + normalise (the 1st-99th percentile stretched); binarise "
                    f"is Otsu's threshold, height crops the inked rows to the line's height, deskew undoes the "
                    f"rotation whose ink rows are sharpest (shared/data/ocr.py); the colour model starts with its "
                    f"first kernel spread over the channels by their luma weights. An option helps when it lowers "
                    f"the CER by more than {GAIN_MARGIN}.",
            "columns": ["framework", "pipeline", "cer", "wer", "worst_challenge", "worst_challenge_cer",
                        "train_seconds"],
            "rows": rows,
            "plot": {"kind": "bars", "title": "CER per preprocessing pipeline (held-out lines)", "ylabel": "CER",
                     "xlabel": "pipeline", "labels": list(PIPELINES),
                     "series": {fw: [found[fw, label]["cer"] for label in PIPELINES] for fw in plan.frameworks
                                if (fw, base) in found}},
            "verdicts": [{"claim": "Preprocessing (normalisation, binarisation, geometric normalisation) improves "
                                   "recognition", "verdict": verdict, "evidence": "; ".join(lines) or "no model"}],
            "images": {}}


def samples_study(ctx: StudyContext) -> dict:
    """A PNG: held-out lines, the truth and both twins' transcriptions with their errors in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = ctx.data.test
    read = {fw: _read(ctx, fw, test.images) for fw in FRAMEWORKS if fw in ctx.models}
    # The lines either twin gets wrong first, then right ones, so that the picture shows errors when there are any.
    wrong = [i for i in range(len(test)) if any(r[i] != test.texts[i] for r in read.values())]
    chosen = (wrong + [i for i in range(len(test)) if i not in set(wrong)])[:SAMPLE_LINES]
    fig, axes = plt.subplots(len(chosen), 1, figsize=(6.0, 1.05 * len(chosen)), squeeze=False)
    for ax, i in zip(axes[:, 0], chosen):
        image = test.images[i]
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1, aspect="equal",
                  extent=(0, image.shape[1], image.shape[0], 0))
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"truth: {test.texts[i]!r}", fontsize=7, loc="left", family="monospace")
        for k, (fw, texts) in enumerate(read.items()):
            _marked(ax, f"{fw:<10} ", texts[i], test.texts[i], y=-0.2 - 0.22 * k)
    fig.suptitle("Held-out lines: truth and each twin's reading (errors in red, deletions as _)", fontsize=8)
    fig.tight_layout()
    path = ctx.cache.path("samples.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    same = float(np.mean([a == b for a, b in zip(*read.values())])) if len(read) == 2 else None
    return {"title": "Sample lines (seed answer 8)",
            "text": f"{len(chosen)} held-out lines, those either twin misreads first. Lines read right: "
                    + ", ".join(f"{fw} {np.mean([t == s for t, s in zip(r, test.texts)]):.3f}" for fw, r in read.items())
                    + (f"; the twins read {same:.3f} of the lines the same." if same is not None else "."),
            "columns": [], "rows": [], "plot": None, "verdicts": [], "images": {"samples": str(path)}}


def _marked(ax, prefix: str, predicted: str, truth: str, y: float) -> None:
    """Write ``prefix`` + ``predicted`` under the image in monospace, wrong characters red (a deleted character
    as a red underscore)."""
    pieces = [(prefix, "black")]
    for op, t, p in line_errors(predicted, truth):
        if op == "equal":
            pieces.append((p, "black"))
        elif op == "delete":
            pieces.append(("_" * len(t), "red"))
        else:
            pieces.append((p, "red"))
    # A monospace glyph advances 0.6 em (DejaVu Sans Mono's 1233 / 2048): that many points, in axes fractions.
    step = 0.602 * 7 / (ax.get_position().width * ax.figure.get_figwidth() * 72)
    x = 0.0
    for text, colour in pieces:
        ax.text(x, y, text, transform=ax.transAxes, fontsize=7, family="DejaVu Sans Mono", color=colour, va="top")
        x += step * len(text)


def twins_study(ctx: StudyContext) -> dict:
    """The twins' quality side by side (greedy CER and WER on the held-out lines) against the target."""
    test = ctx.data.test
    found = {fw: ctx.cache.json(f"quality-{fw}.json", lambda fw=fw: text_metrics(_read(ctx, fw, test.images),
                                                                                 test.texts))[0]
             for fw in FRAMEWORKS if fw in ctx.models}
    rows = [{"framework": fw, **{k: v for k, v in m.items()}} for fw, m in found.items()]
    lines = [f"{fw}: CER {m['cer']:.4f}, WER {m['wer']:.4f} (target CER <= {QUALITY_TARGET})" for fw, m in found.items()]
    if len(found) == 2:
        gap = abs(found["torch"]["cer"] - found["tensorflow"]["cer"])
        lines.append(f"gap {gap:.4f} (within {TWINS_MARGIN}: the same quality)")
        verdict = SUPPORTED if gap <= TWINS_MARGIN and all(m["cer"] <= QUALITY_TARGET for m in found.values()) \
            else REFUTED if gap > TWINS_MARGIN else MIXED
    else:
        verdict = NOT_MEASURABLE
    return {"title": "The twins' quality (seed answer 25)",
            "text": f"Each framework's CRNN trained from the same initial weights on the same batches, read with "
                    f"greedy decoding, on the {len(test):,} held-out lines.",
            "columns": ["framework", "cer", "wer", "char_accuracy", "line_accuracy"], "rows": rows, "plot": None,
            "verdicts": [{"claim": "PyTorch and TensorFlow train OCR models of the same quality", "verdict": verdict,
                          "evidence": "; ".join(lines)}],
            "images": {}}


PLUGIN = TaskPlugin(
    studies=(Study(twins_study, "twins", (25,)), Study(challenges_study, "challenges", (8, 25)),
             Study(decoding_study, "decoding", (8,)), Study(preprocessing_study, "preprocessing", (8, 25)),
             Study(samples_study, "samples", (8,))),
    claims=(
        ("ocr-challenges", "8, 25", "Variations in fonts, sizes and orientation, noise, blur and background clutter "
         "make OCR harder", study_verdict(run_name(TASK), "challenges", 0)),
        ("ocr-segmentation", "25", "OCR needs character segmentation before recognition",
         study_verdict(run_name(TASK), "challenges", 1)),
        ("ocr-preprocessing", "8, 25", "Preprocessing such as normalisation, binarisation and geometric "
         "normalisation improves OCR accuracy", study_verdict(run_name(TASK), "preprocessing")),
        ("ocr-decoding", "8", "Post-processing the network's per-character predictions improves OCR",
         study_verdict(run_name(TASK), "decoding")),
        ("ocr-twins", "25", "PyTorch and TensorFlow train OCR models of the same quality",
         study_verdict(run_name(TASK), "twins")),
    ),
    compare_postprocessed=compare_texts,
)

__all__ = ["PLUGIN", "compare_texts"]
