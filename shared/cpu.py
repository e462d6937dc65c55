"""What this x86 CPU can do for int8 and fp32 kernels, and the int8 setting that follows from it.

Why it matters: on x86 CPUs without VNNI (AVX2 only, or AVX-512 before Cascade
Lake), the integer kernels of ONNX Runtime (MLAS) and oneDNN multiply uint8
activations by int8 weights with ``VPMADDUBSW``, which adds two neighbouring
products into a *saturating* int16. With full-range operands one pair reaches
2 x 255 x 128 = 65280 > 32767, so a convolution can silently clip: the same
int8 model gives a different (worse) answer on such a CPU. VNNI's ``VPDPBUSD``
accumulates in int32 and never saturates. ONNX Runtime's quantization guide
and torchao's x86 quantizer both say to use a reduced range on CPUs without
VNNI; this module decides when, so every int8 path stays exact on any x86-64.

The setting can be forced (``TWINVISION_INT8_KERNELS=no-vnni``) so a VNNI
machine can build, test and time the models an AVX2 machine would get.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

# CPU flags (Linux /proc/cpuinfo spelling) recorded with every report; the ones int8 and fp32 speed turn on.
FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
            "amx_int8", "amx_bf16")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
INT8_KERNELS_ENV = "TWINVISION_INT8_KERNELS"
INT8_CHOICES = ("auto", "vnni", "no-vnni")
# The largest value an int16 holds: one VPMADDUBSW pair (two u8 x s8 products) must stay within it.
INT16_MAX = 32767
UINT8_MAX = 255


@dataclass(frozen=True)
class CpuInfo:
    """model: the CPU's marketing name; flags: which of ``FEATURES`` it has (None: not readable here)."""

    model: str
    machine: str
    flags: dict[str, bool] | None

    @property
    def vnni(self) -> bool | None:
        """Whether int8 dot products accumulate without saturation (VNNI or AMX); None when unknown."""
        return None if self.flags is None else any(self.flags.get(f, False) for f in VNNI_FLAGS)

    @property
    def isa(self) -> str:
        """The widest vector ISA, in words: 'AVX-512 + VNNI', 'AVX2', ..."""
        if self.flags is None:
            return f"unknown ({self.machine})"
        f = self.flags
        base = "AVX-512" if f.get("avx512f") else "AVX2" if f.get("avx2") else "pre-AVX2"
        extras = [name for flag, name in (("avx512_vnni", "VNNI"), ("avx_vnni", "AVX-VNNI"), ("amx_int8", "AMX"))
                  if f.get(flag)]
        return " + ".join([base, *extras])

    def describe(self) -> str:
        """One line naming the CPU and its ISA, for every time the project prints."""
        return f"{self.model} ({self.isa})"

    def as_dict(self) -> dict:
        return {"model": self.model, "machine": self.machine, "isa": self.isa, "vnni": self.vnni,
                "flags": self.flags}


def _read_cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str, set[str]] | None:
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def cpu_info(cpuinfo_path: str = "/proc/cpuinfo") -> CpuInfo:
    """This machine's CPU, read from the kernel's cpuinfo (flags are None where that file does not exist)."""
    machine = platform.machine()
    read = _read_cpuinfo(cpuinfo_path)
    if read is None:
        return CpuInfo(platform.processor() or machine, machine, None)
    model, flags = read
    return CpuInfo(model or platform.processor() or machine, machine, {f: f in flags for f in FEATURES})


@dataclass(frozen=True)
class Int8Setting:
    """How int8 models are quantized for the kernels that will run them.

    name: ``vnni`` (full-range int8 weights) or ``no-vnni`` (7-bit weights, in [-64, 63]: one
        VPMADDUBSW pair is then at most 2 x 255 x 64 = 32640, inside int16, whatever the activations).
    weight_bits: 8 or 7.
    reason: why this setting, in words (the report prints it).
    """

    name: str
    weight_bits: int
    reason: str

    @property
    def reduce_range(self) -> bool:
        return self.weight_bits < 8

    @property
    def weight_range(self) -> tuple[int, int]:
        """The signed integer range of quantized weights: [-128, 127] or [-64, 63]."""
        half = 2 ** (self.weight_bits - 1)
        return -half, half - 1


def int8_setting(choice: str | None = None, cpu: CpuInfo | None = None) -> Int8Setting:
    """The int8 setting for ``choice`` (``auto``, ``vnni`` or ``no-vnni``; default: the environment variable
    ``TWINVISION_INT8_KERNELS``, else ``auto``). ``auto`` picks ``vnni`` only on a CPU known to have VNNI:
    an unknown CPU gets the setting that is exact everywhere."""
    choice = choice or os.environ.get(INT8_KERNELS_ENV) or "auto"
    if choice not in INT8_CHOICES:
        raise ValueError(f"int8 kernels: expected one of {list(INT8_CHOICES)} (argument or ${INT8_KERNELS_ENV}); "
                         f"received {choice!r}")
    if choice == "vnni":
        return Int8Setting("vnni", 8, "forced: full-range int8 weights (exact only on a CPU with VNNI)")
    if choice == "no-vnni":
        return Int8Setting("no-vnni", 7, "forced: 7-bit weights, exact on any x86-64 CPU")
    cpu = cpu or cpu_info()
    if cpu.vnni:
        return Int8Setting("vnni", 8, f"this CPU has VNNI ({cpu.isa}): full-range int8 weights are exact")
    known = "has no VNNI" if cpu.vnni is False else "could not be identified"
    return Int8Setting("no-vnni", 7, f"this CPU {known} ({cpu.isa}): 7-bit weights keep u8 x s8 pairs inside "
                                     f"int16 (no saturation)")


def u8s8_pair_bound(max_abs_weight: int) -> int:
    """The largest |sum| of one VPMADDUBSW pair for uint8 activations and weights of at most ``max_abs_weight``."""
    return 2 * UINT8_MAX * int(max_abs_weight)


# TensorFlow's own default for its oneDNN kernels on Linux x86 (tensorflow/core/util/port.cc,
# DefaultOneDnnPolicy): on only for CPUs with one of these, off on an AVX2-only CPU.
TF_ONEDNN_DEFAULT_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
TF_ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"


def tensorflow_onednn(environ: dict | None = None, cpu: CpuInfo | None = None) -> dict:
    """Decide whether TensorFlow uses its oneDNN kernels, and set ``TF_ENABLE_ONEDNN_OPTS`` accordingly.

    Must run before TensorFlow is imported (``tensorflow_impl/__init__.py`` calls it). TensorFlow turns
    oneDNN off by default on x86 CPUs without VNNI, BF16 or AMX, and falls back to Eigen kernels whose
    convolution gradients are 3.5x slower (TensorFlow's profiler, the report's classification ResNet:
    Conv2DBackpropInput + Conv2DBackpropFilter 172 ms against 49 ms a step): a TensorFlow twin would then
    train about 3x slower than PyTorch on an AVX2 machine for a reason that is TensorFlow's policy, not
    its kernels. oneDNN's AVX2 kernels are fast, so it is turned on wherever the CPU has AVX2. A value
    the user set is kept.

    Returns enabled, source ('user environment', 'twinvision' or "TensorFlow's default") and reason.
    """
    environ = os.environ if environ is None else environ
    cpu = cpu or cpu_info()
    flags = cpu.flags or {}
    tf_default = any(flags.get(f, False) for f in TF_ONEDNN_DEFAULT_FLAGS)
    if TF_ONEDNN_ENV in environ:
        enabled = environ[TF_ONEDNN_ENV].strip().lower() in ("1", "true")
        return {"enabled": enabled, "source": "user environment",
                "reason": f"{TF_ONEDNN_ENV}={environ[TF_ONEDNN_ENV]} was set before the run"}
    if tf_default or not flags.get("avx2"):
        return {"enabled": tf_default, "source": "TensorFlow's default",
                "reason": f"TensorFlow's own policy for this CPU ({cpu.isa})"}
    environ[TF_ONEDNN_ENV] = "1"
    return {"enabled": True, "source": "twinvision",
            "reason": f"TensorFlow would leave oneDNN off on this CPU ({cpu.isa}: no VNNI, BF16 or AMX) and run "
                      f"its slower Eigen convolutions; turned on for AVX2"}
