"""Test set-up shared by every test module.

The import-order guard comes first: tensorflow_impl loads triton before
TensorFlow (loading it after crashes the process; docs/DEPENDENCIES.md, "Traps handled in code").
"""

import tensorflow_impl  # noqa: F401  (must stay the first import)
import pytorch_impl  # noqa: F401

import pytest
import torch

from .parity_mixin import data_of, spec_of, trained_weights, twins_of


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_spec():
    from shared.specs import get_spec

    return get_spec("classification", "tiny")


@pytest.fixture(scope="session")
def tiny_data(tiny_spec):
    return data_of(tiny_spec)


@pytest.fixture
def run(request):
    """The registry model, (task, variant), a test module is about (its RUN; the parity mixin parametrises it):
    the fixtures below load its twins, data and trained weights once per session (tests/parity_mixin.py)."""
    return request.module.RUN


@pytest.fixture
def twins(run):
    return twins_of(run[0])


@pytest.fixture
def data(run):
    return data_of(spec_of(run))


@pytest.fixture
def trained(run):
    """Canonical weights after the model's L5 training recipe (parity_mixin.RECIPES)."""
    return trained_weights(*run)


# Command-line marks of the processes a data-parallel job starts (compare/data_parallel.py).
WORKER_MARKS = ("pytorch_impl.data_parallel", "tensorflow_impl.data_parallel", "torch.distributed.run")


def _workers_left() -> list[str]:
    import os
    import subprocess

    ps = subprocess.run(["ps", "-eo", "pid,pgid,args"], capture_output=True, text=True).stdout
    mine = str(os.getpid())
    return [line.strip() for line in ps.splitlines()[1:]
            if any(m in line for m in WORKER_MARKS) and line.split()[0] != mine]


@pytest.fixture(scope="session", autouse=True)
def no_worker_left_behind():
    """At the end of the session, no worker process of a data-parallel job may still run: any found is
    killed and reported as an error of the suite."""
    before = set(_workers_left())
    yield
    left = [line for line in _workers_left() if line not in before]
    if left:
        import os
        import signal

        for line in left:
            try:
                os.kill(int(line.split()[0]), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        pytest.fail(f"data-parallel worker processes left behind: {left}")


@pytest.fixture
def smoke_timing(monkeypatch):
    """The quick profile's timing rule cut to a few calls per measurement, for tests of a report's or a study's
    flow that assert nothing about the times (tests assert correctness; the report measures speed)."""
    from compare import pipeline
    from compare import speed as S

    smoke = S.TimingBudget(warmup_window=1, warmup_max_s=0.0, sample_s=0.001, window=2, max_samples=2,
                           max_time_s=0.0)
    monkeypatch.setattr(S, "QUICK", smoke)
    monkeypatch.setitem(pipeline.PROFILES, "quick", ("tiny", smoke, pipeline.PROFILES["quick"][2]))
    return smoke
