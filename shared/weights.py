"""The canonical weight layout and the safetensors files that carry it.

Canonical means PyTorch's ``state_dict``: the same key names
(``layer1.0.conv1.weight``) and the same shapes (conv kernels ``(O, I, kh, kw)``).
Both twins convert to and from it, so a torchvision ``state_dict`` loads into
the Keras twin and weights never cross frameworks through pickle.

Files are safetensors written with ``safetensors.numpy``: a header and raw
buffers, nothing executable, and written atomically (temp file + rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

# How each kind of tensor is laid out in Keras, as the axes of the canonical
# array to take (np.transpose order). docs/ARCHITECTURE.md, "The weight bridge".
TO_KERAS: dict[str, tuple[int, ...]] = {
    "conv": (2, 3, 1, 0),            # (O, I, kh, kw) -> (kh, kw, I, O)
    "depthwise": (2, 3, 0, 1),       # (C, 1, kh, kw) -> (kh, kw, C, 1)
    "conv_transpose": (2, 3, 1, 0),  # (I, O, kh, kw) -> (kh, kw, O, I)
    "dense": (1, 0),                 # (out, in) -> (in, out)
    "vector": (0,),                  # biases, BatchNorm statistics: same in both
    "addend": (0,),                  # a vector Keras folds into another key's variable (ADDEND)
}

# A canonical tensor with no Keras variable of its own: Keras holds its sum with the key before it. torch's LSTM
# keeps two biases (``bias_ih``, ``bias_hh``) that only ever appear added; Keras' LSTM has the one. On the way to
# Keras both are added; on the way back the sum is ``bias_ih`` and ``bias_hh`` is zero (tensorflow_impl/bridge.py).
ADDEND = "addend"

# PyTorch bookkeeping buffers with no Keras counterpart: left out of the
# canonical layout (torch re-creates them on load).
TORCH_ONLY_SUFFIXES = ("num_batches_tracked",)


class WeightError(ValueError):
    """A weight file or tensor set does not fit the model it is loaded into."""


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


def to_keras(kind: str, array: np.ndarray) -> np.ndarray:
    """Canonical (PyTorch) array -> the Keras layout of the same tensor."""
    perm = _rule(kind, array)
    return np.ascontiguousarray(np.transpose(array, perm))


def from_keras(kind: str, array: np.ndarray) -> np.ndarray:
    """Keras array -> the canonical (PyTorch) layout of the same tensor."""
    perm = _rule(kind, array)
    return np.ascontiguousarray(np.transpose(array, _inverse(perm)))


def _rule(kind: str, array: np.ndarray) -> tuple[int, ...]:
    if kind not in TO_KERAS:
        raise WeightError(f"unknown tensor kind {kind!r}; expected one of {sorted(TO_KERAS)}")
    perm = TO_KERAS[kind]
    if array.ndim != len(perm):
        raise WeightError(f"a {kind} tensor has rank {len(perm)}; received shape {tuple(array.shape)}")
    return perm


def is_canonical_key(key: str) -> bool:
    return not key.endswith(TORCH_ONLY_SUFFIXES)


def check_layout(expected: Mapping[str, tuple[int, ...]], tensors: Mapping[str, np.ndarray],
                 *, source: str = "weights") -> None:
    """Raise WeightError unless ``tensors`` has exactly the expected keys and shapes.

    The message lists every missing key, every unexpected key and, for each
    mis-shaped tensor, its key with both shapes.
    """
    problems = []
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing:
        problems.append(f"missing keys {missing}")
    if extra:
        problems.append(f"unexpected keys {extra}")
    for key, shape in expected.items():
        if key in tensors and tuple(tensors[key].shape) != tuple(shape):
            problems.append(f"{key!r}: model expects shape {tuple(shape)}, {source} has {tuple(tensors[key].shape)}")
    for key, value in tensors.items():
        if key in expected and not np.issubdtype(np.asarray(value).dtype, np.number):
            problems.append(f"{key!r}: expected a numeric tensor, {source} has dtype {np.asarray(value).dtype}")
    if problems:
        raise WeightError(f"{source} do not match the model: " + "; ".join(problems))


def save_file(tensors: Mapping[str, np.ndarray], path: str | os.PathLike,
              metadata: Mapping[str, str] | None = None) -> Path:
    """Write canonical tensors to a safetensors file, atomically."""
    from safetensors.numpy import save as st_save

    path = Path(path)
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    meta = {"format": "twinvision.canonical/1", **{k: str(v) for k, v in (metadata or {}).items()}}
    write_atomic(path, st_save(arrays, metadata=meta))
    return path


def load_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a safetensors file; a missing, truncated or foreign file raises WeightError naming it."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    path = Path(path)
    if not path.is_file():
        raise WeightError(f"weight file {str(path)!r} does not exist")
    data = path.read_bytes()
    if len(data) < 8:
        raise WeightError(f"weight file {str(path)!r} is not a safetensors file: only {len(data)} bytes")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise WeightError(f"weight file {str(path)!r} is corrupt or truncated: header says {header_len} bytes, "
                          f"file has {len(data) - 8} after the length field")
    try:
        return st_load(data)
    except (SafetensorError, ValueError, json.JSONDecodeError) as err:
        raise WeightError(f"weight file {str(path)!r} is corrupt: {err}") from None


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file (what ``save_file`` was given, plus its format)."""
    path = Path(path)
    load_file(path)  # the same checks and errors as for the tensors
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8:8 + header_len])
    return dict(header.get("__metadata__") or {})


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename.

    A reader (or a run killed halfway) sees the old file or the new one, never
    a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def randomize_batchnorm(tensors: Mapping[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """Give every BatchNorm non-trivial affine parameters and running statistics.

    A fresh BatchNorm (weight 1, bias 0, mean 0, var 1) is the identity in eval
    mode, so an eval-mode parity check would not test it at all.
    """
    rng = np.random.default_rng(seed)
    out = dict(tensors)
    for key in tensors:
        if key.endswith(".running_mean"):
            prefix = key[: -len("running_mean")]
            n = tensors[key].shape
            out[prefix + "weight"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
            out[prefix + "bias"] = rng.normal(0.0, 0.2, n).astype(np.float32)
            out[prefix + "running_mean"] = rng.normal(0.0, 0.2, n).astype(np.float32)
            out[prefix + "running_var"] = rng.uniform(0.5, 2.0, n).astype(np.float32)
    return out
