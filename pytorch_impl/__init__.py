"""The PyTorch twin of every TwinVision task.

Native layout is NCHW; data arrives NHWC from ``shared`` and is converted in
``tensors.to_native`` and nowhere else. The TensorFlow twin lives in
``tensorflow_impl`` with the same file and public names.
"""

import torch  # noqa: F401  (imported first: see tensorflow_impl/__init__.py)
