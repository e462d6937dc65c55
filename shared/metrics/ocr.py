"""OCR metrics: character and word error rates with jiwer, line accuracy, and the edit operations behind them.

CER is the character-level Levenshtein distance (substitutions + deletions + insertions) summed over the lines,
divided by the reference characters summed over the lines (jiwer's ``cer`` on the list); WER the same over
words (split at spaces). ``char_accuracy`` = 1 - CER is the primary metric, so that, as every task's primary
metric, higher is better (the quantization and compression tables compare drops of it).
"""

from __future__ import annotations

import numpy as np

PRIMARY_METRIC = "char_accuracy"


def _check(predicted, truth) -> tuple[list[str], list[str]]:
    predicted, truth = [str(p) for p in predicted], [str(t) for t in truth]
    if len(predicted) != len(truth):
        raise ValueError(f"predicted: expected one string per reference line ({len(truth)}); received "
                         f"{len(predicted)}")
    if not truth:
        raise ValueError("truth: expected at least one reference line; received none")
    empty = [i for i, t in enumerate(truth) if not t.strip()]
    if empty:
        raise ValueError(f"truth: expected non-empty reference lines; lines {empty[:5]} are empty")
    return predicted, truth


def text_metrics(predicted, truth) -> dict:
    """cer, wer, char_accuracy (1 - cer) and line_accuracy (exactly right) of ``predicted`` against ``truth``."""
    import jiwer

    predicted, truth = _check(predicted, truth)
    cer = float(jiwer.cer(truth, predicted))
    # jiwer's word transform drops empty hypotheses' words; an empty line is one deletion per reference word.
    wer = float(jiwer.wer(truth, [p if p.strip() else "\u2205" for p in predicted]))
    return {"cer": cer, "wer": wer, "char_accuracy": 1.0 - cer,
            "line_accuracy": float(np.mean([p == t for p, t in zip(predicted, truth)]))}


def line_errors(predicted: str, truth: str) -> list[tuple[str, str, str]]:
    """The alignment of one line as (operation, truth part, predicted part) runs: ``equal``, ``substitute``,
    ``delete`` (in the truth, missing from the prediction) and ``insert`` (only in the prediction), from
    jiwer's character alignment. The report marks errors with it."""
    import jiwer

    if not truth:
        return [("insert", "", predicted)] if predicted else []
    if not predicted:
        return [("delete", truth, "")]
    out = jiwer.process_characters(truth, predicted)
    runs = []
    for chunk in out.alignments[0]:
        t, p = truth[chunk.ref_start_idx:chunk.ref_end_idx], predicted[chunk.hyp_start_idx:chunk.hyp_end_idx]
        runs.append(({"substitute": "substitute"}.get(chunk.type, chunk.type), t, p))
    return runs


def evaluate(spec, outputs: dict, split, postprocess=None) -> dict:
    """The task's metrics hook (``shared.metrics.evaluate_outputs``): per-step logits decoded by the serving
    framework's ``postprocess`` (greedy), then the text metrics."""
    if postprocess is None:
        raise ValueError("OCR outputs are per-step logits: evaluate_outputs needs the twin's postprocess (decoding)")
    return text_metrics(postprocess(outputs, spec), split.texts)


def agreement(a: dict, b: dict, spec) -> float:
    """The share of lines whose greedy paths (the top class at every step) two backends agree on."""
    pa, pb = np.asarray(a["logits"]).argmax(-1), np.asarray(b["logits"]).argmax(-1)
    return float((pa == pb).all(axis=-1).mean())


__all__ = ["PRIMARY_METRIC", "agreement", "evaluate", "line_errors", "text_metrics"]
