"""CTC decoding (PyTorch twin): greedy (best path) with torch ops, beam search with torchaudio's flashlight
decoder. Both return strings (shared/specs/ocr.py: ``CHARSET``; the blank is index 0)."""

from __future__ import annotations

import functools

import numpy as np
import torch

from shared.data.ocr import decode_ids
from shared.specs.ocr import BLANK, CHARSET, OCRSpec

from .model import CRNN, predict


def greedy_decode(logits) -> list[str]:
    """Best path: the top class per step, repeats merged, blanks dropped. ``logits``: [N, T, K]."""
    best = torch.as_tensor(np.asarray(logits)).argmax(dim=-1)                        # [N, T]
    keep = best != BLANK
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]
    return [decode_ids(row[mask].tolist()) for row, mask in zip(best, keep)]


@functools.lru_cache(maxsize=8)
def _beam_decoder(beam_width: int):
    from torchaudio.models.decoder import ctc_decoder

    tokens = ["<blank>", *CHARSET]
    # Lexicon-free and without a language model. ``log_add``: hypotheses that reach the same text are merged by
    # summing their probabilities (a prefix beam search, as TensorFlow's); with the default max, the decoder
    # keeps the single best alignment, which without a language model is the greedy path. Its word-boundary
    # token must be one of the tokens: the blank serves (our lines have their own space character), and its
    # appearances are dropped with the blanks.
    return ctc_decoder(lexicon=None, tokens=tokens, blank_token="<blank>", sil_token="<blank>",
                       beam_size=beam_width, nbest=1, log_add=True)


def beam_decode(logits, beam_width: int) -> list[str]:
    """Beam search over the per-step log-softmax of ``logits`` [N, T, K]; the best hypothesis per line."""
    log_probs = torch.log_softmax(torch.as_tensor(np.asarray(logits), dtype=torch.float32), dim=-1).contiguous()
    hypotheses = _beam_decoder(beam_width)(log_probs)
    return [decode_ids(h[0].tokens.tolist()) if h else "" for h in hypotheses]


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
