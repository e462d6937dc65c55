"""OCR (TensorFlow twin): a CRNN read with CTC, its loss, greedy and beam decoding, training and metrics."""

from .decode import beam_decode, greedy_decode, postprocess, read
from .loss import compute_loss
from .model import CRNN, LSTM, build_model, predict
from .train import evaluate, train, train_steps

__all__ = ["CRNN", "LSTM", "beam_decode", "build_model", "compute_loss", "evaluate", "greedy_decode", "postprocess",
           "predict", "read", "train", "train_steps"]
