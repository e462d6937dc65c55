"""The PyTorch twin of every TwinVision task.

Native layout is NCHW; data arrives NHWC from ``shared`` and is converted in
``tensors.to_native`` and nowhere else. The TensorFlow twin lives in
``tensorflow_impl`` with the same file and public names.
"""

import warnings

import torch  # noqa: F401  (imported first: see tensorflow_impl/__init__.py)

# CUDA builds of torch probe for a GPU on the first backward pass and warn when the
# machine has none; that is the normal CPU case here, not a problem to report.
warnings.filterwarnings("ignore", message="CUDA initialization", category=UserWarning)
