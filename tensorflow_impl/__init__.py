"""The TensorFlow / Keras 3 twin of every TwinVision task.

Native layout is NHWC, the layout of the data itself; ``tensors.to_native``
still is the one boundary where arrays become framework tensors.

Import-order guard: loading triton (which torchvision, ``torch.compile`` and
the dynamo ONNX exporter pull in) *after* TensorFlow has been imported crashes
the process with a segfault. Loading triton first, when it is installed,
avoids it; every entry point and ``tests/conftest.py`` import this package
before anything else, so the order is fixed in this one place.
"""

import importlib.util
import os

if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401

# Quiets TensorFlow's C++ logging where it honours this (its absl start-up lines it does not).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402,F401
import keras  # noqa: E402,F401
