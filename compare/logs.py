"""Quiet start-up: TensorFlow's, XLA's and CUDA's C++ log lines kept off the command's stderr.

TensorFlow writes them from C++ straight to file descriptor 2 (absl logging),
some while its shared libraries load, before it reads TF_CPP_MIN_LOG_LEVEL
(measured with TensorFlow 2.21: the variable does not remove them), so
neither that variable nor Python's logging reaches them. The command line
therefore puts a filter on descriptor 2: a thread copies every line to the real
stderr except the known noise (absl INFO and WARNING lines, the absl
"before InitializeLog" notice, and the CUDA probes' errors on a machine without
a GPU). Everything else, the command's own errors and any traceback included,
passes unchanged. ``twinvision --verbose`` leaves stderr alone.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading
import warnings

# absl's prefix: severity letter, MMDD, time, thread id, file:line]
NOISE = re.compile(rb"^(?:[IW]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "
                   rb"|E\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] .*(?:cuInit|CUDA|cuda)"
                   rb"|WARNING: All log messages before absl::InitializeLog\(\) is called)")

_installed = False


def is_noise(line: bytes) -> bool:
    return NOISE.match(line) is not None


def quiet_framework_logs() -> None:
    """Filter this process's descriptor 2 (and its children's, which inherit it) until exit."""
    global _installed
    if _installed:
        return
    _installed = True
    # torch's Python warning when it probes for a GPU that is not there.
    warnings.filterwarnings("ignore", message="CUDA initialization")
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as source, os.fdopen(os.dup(real), "wb", buffering=0) as sink:
            for line in source:
                if not is_noise(line):
                    sink.write(line)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(real, 2)  # the pipe's last writer in this process closes: the pump drains and stops
        thread.join(timeout=2.0)

    atexit.register(restore)


__all__ = ["NOISE", "is_noise", "quiet_framework_logs"]
