"""CTC decoding (TensorFlow twin): ``tf.nn.ctc_greedy_decoder`` and ``tf.nn.ctc_beam_search_decoder``. Both
return strings (shared/specs/ocr.py: ``CHARSET``; the blank is index 0)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from shared.data.ocr import decode_ids
from shared.specs.ocr import BLANK, OCRSpec

from .model import CRNN, predict


def _time_major(logits) -> tuple[tf.Tensor, tf.Tensor]:
    logits = np.asarray(logits, np.float32)
    n, steps, _ = logits.shape
    return tf.transpose(tf.convert_to_tensor(logits), (1, 0, 2)), tf.fill([n], steps)


def _strings(decoded: tf.SparseTensor, n: int, shift: int = 0) -> list[str]:
    rows = [[] for _ in range(n)]
    for (i, _), v in zip(decoded.indices.numpy(), decoded.values.numpy()):
        rows[i].append(int(v) + shift)
    return [decode_ids(r) for r in rows]


def greedy_decode(logits) -> list[str]:
    """Best path: the top class per step, repeats merged, blanks dropped (``blank_index`` 0). ``logits``:
    [N, T, K]."""
    inputs, steps = _time_major(logits)
    (decoded,), _ = tf.nn.ctc_greedy_decoder(inputs, steps, merge_repeated=True, blank_index=BLANK)
    return _strings(decoded, inputs.shape[1])


def beam_decode(logits, beam_width: int) -> list[str]:
    """Prefix beam search (``tf.nn.ctc_beam_search_decoder``); the best hypothesis per line. That decoder takes
    the blank as the last class, so the blank's column moves from index 0 to the end and every character id
    shifts down by one, which ``_strings`` adds back."""
    inputs, steps = _time_major(logits)
    rotated = tf.concat([inputs[..., BLANK + 1:], inputs[..., :BLANK + 1]], axis=-1)
    (decoded,), _ = tf.nn.ctc_beam_search_decoder(tf.nn.log_softmax(rotated), steps, beam_width=beam_width,
                                                  top_paths=1)
    return _strings(decoded, inputs.shape[1], shift=1)


def postprocess(outputs: dict, spec: OCRSpec) -> list[str]:
    """Raw outputs -> one string per line (greedy decoding: what the report scores every backend with)."""
    return greedy_decode(outputs["logits"])


def read(model: CRNN, images: np.ndarray, spec: OCRSpec, decoder: str = "greedy") -> list[str]:
    """The text of each NHWC line image: ``greedy`` or ``beam`` (``spec.decode.beam_width``)."""
    logits = predict(model, images)["logits"]
    if decoder == "greedy":
        return greedy_decode(logits)
    if decoder == "beam":
        return beam_decode(logits, spec.decode.beam_width)
    raise ValueError(f"unknown decoder {decoder!r}; expected one of ['greedy', 'beam']")
