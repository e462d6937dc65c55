"""What a run was made on: host, threads and library versions, recorded with every result."""

from __future__ import annotations

import datetime as dt
import os
import platform
import uuid
from importlib import metadata

PACKAGES = ("torch", "torchvision", "tensorflow", "keras", "onnx", "onnxruntime", "tf2onnx", "ai-edge-litert",
            "numpy", "safetensors")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    return {
        "id": f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}",
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "profile": profile,
        "host": {"cpu": _cpu_name(), "cores": os.cpu_count(), "threads": threads or os.cpu_count(),
                 "platform": platform.platform()},
        "versions": versions(),
    }
