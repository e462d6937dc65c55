"""What a run was made on: host, threads and library versions, recorded with every result."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import uuid
from importlib import metadata

from shared.cpu import cpu_info, int8_setting

PACKAGES = ("torch", "torchvision", "tensorflow", "keras", "onnx", "onnxruntime", "tf2onnx", "ai-edge-litert",
            "numpy", "safetensors")


def kernels() -> dict:
    """What each library will run on this CPU: the int8 setting, TensorFlow's oneDNN switch, torch's ISA."""
    out = {"int8": dataclasses.asdict(int8_setting())}
    try:
        import tensorflow_impl

        out["tensorflow_onednn"] = tensorflow_impl.ONEDNN
    except ImportError as err:  # a host block is still written without the frameworks
        out["tensorflow_onednn"] = {"enabled": None, "source": "unknown", "reason": f"tensorflow_impl: {err}"}
    try:
        import torch

        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except ImportError as err:
        out["torch_cpu_capability"] = f"unknown ({err})"
    return out


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def run_info(profile: str, threads: int | None = None) -> dict:
    """The ``run`` block of results.json."""
    cpu = cpu_info()
    return {
        "id": f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}",
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "profile": profile,
        "host": {"cpu": cpu.model, "isa": cpu.isa, "cpu_features": cpu.flags, "cores": os.cpu_count(),
                 "threads": threads or os.cpu_count(), "platform": platform.platform(), **kernels()},
        "versions": versions(),
    }
