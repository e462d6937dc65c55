"""The TensorFlow / Keras 3 twin of every TwinVision task.

Native layout is NHWC, the layout of the data itself; ``tensors.to_native``
still is the one boundary where arrays become framework tensors.

Import-order guard: loading triton (which torchvision, ``torch.compile`` and
the dynamo ONNX exporter pull in) *after* TensorFlow has been imported crashes
the process with a segfault. Loading triton first, when it is installed,
avoids it; every entry point and ``tests/conftest.py`` import this package
before anything else, so the order is fixed in this one place. The same place
decides TensorFlow's oneDNN setting (``shared.cpu.tensorflow_onednn``), which
must also be made before TensorFlow loads.
"""

import importlib.util
import os

from shared.cpu import tensorflow_onednn

if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401

# Quiets TensorFlow's C++ logging where it honours this (its absl start-up lines it does not).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN kernels on every x86 CPU with AVX2, decided (and recorded for the report) before TensorFlow loads:
# TensorFlow's own default leaves them off on CPUs without VNNI, where training is then ~3x slower.
ONEDNN = tensorflow_onednn()

import tensorflow as tf  # noqa: E402,F401
import keras  # noqa: E402,F401
