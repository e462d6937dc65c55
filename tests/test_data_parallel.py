"""Data-parallel training (compare/data_parallel.py, pytorch_impl/data_parallel.py, tensorflow_impl/data_parallel.py):
two workers on loopback equal one process with the whole batch, in each framework, and the two frameworks'
distributed runs agree with each other; a failing job leaves no process behind."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from compare import data_parallel as D
from shared.data import batch_plan, load, training_targets
from shared.specs import FRAMEWORKS, get_spec

TASK, PRESET, STEPS = "classification", "tiny", 4
EQUIVALENCE = 1e-5  # of each tensor's max |value|: the design's bound for N workers against one process


@pytest.fixture(scope="module")
def spec():
    return get_spec(TASK, PRESET)


@pytest.fixture(scope="module")
def init(tmp_path_factory):
    return D.initial_weights(TASK, PRESET, tmp_path_factory.mktemp("init") / "init.safetensors")


@pytest.fixture(scope="module")
def runs(spec, init, tmp_path_factory):
    """Per framework: the 2-worker job and the same steps in one process through the twin's own training
    (``train_steps``: the project's Trainer, not the distributed code), from the same initial weights."""
    from compare.frameworks import load_twin
    from shared.weights import load_file

    out = tmp_path_factory.mktemp("distributed")
    data = load(spec)
    batch = spec.train.batch_size
    batches = [b for epoch in batch_plan(len(data.train), batch, spec.train.epochs, spec.train.seed)
               for b in epoch if len(b) == batch][:STEPS]
    found = {}
    for fw in FRAMEWORKS:
        job = D.train(fw, TASK, PRESET, 2, STEPS, batch, out / f"{fw}-2.safetensors", init=init, timeout_s=300)
        twin = load_twin(fw, TASK)
        model = twin.bridge.import_weights(twin.task.build_model(spec), load_file(init))
        losses = twin.task.train_steps(model, spec, data.train.images, training_targets(data.train, spec), batches,
                                       spec.train)
        found[fw] = {"job": job, "losses": losses, "weights": twin.bridge.export_weights(model)}
    return found


def _worst(a: dict, b: dict) -> tuple[float, str]:
    """The largest |a - b| / max|a| over the tensors both hold, and its key."""
    assert set(a) == set(b)
    return max((float(np.abs(a[k] - b[k]).max() / max(np.abs(a[k]).max(), 1e-12)), k) for k in a)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_two_workers_equal_one_process_with_the_whole_batch(runs, framework):
    run = runs[framework]
    worst, key = _worst(run["weights"], run["job"]["weights"])
    assert worst <= EQUIVALENCE, f"{framework}: {key} differs by {worst:.3g} of its max |value|"
    np.testing.assert_allclose(run["job"]["losses"], run["losses"], rtol=EQUIVALENCE)


def test_the_frameworks_distributed_runs_agree_at_the_training_tolerances(runs, spec):
    tol = spec.tolerances
    torch_run, tf_run = runs["torch"]["job"], runs["tensorflow"]["job"]
    np.testing.assert_allclose(tf_run["losses"], torch_run["losses"], rtol=tol.training_loss)
    worst, key = _worst(torch_run["weights"], tf_run["weights"])
    assert worst <= tol.training_weights, f"{key} differs by {worst:.3g} of its max |value|"


def _job_processes(marker: str) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if marker in line and "ps -eo" not in line]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_failing_worker_ends_the_job_with_its_error_and_leaves_no_process(framework, init, tmp_path):
    """A global batch that does not split over the workers: the first worker's error, quickly, and every
    process of the job gone."""
    out = tmp_path / "w.safetensors"
    with pytest.raises(D.DistributedError, match=r"(?s)worker \d exited with code .*does not split over 3 workers"):
        D.train(framework, TASK, PRESET, 3, 1, 32, out, init=init, timeout_s=120)
    assert not _job_processes(str(out)), _job_processes(str(out))


def test_worker_count_is_checked_before_any_process_starts(init, tmp_path):
    for bad in (0, -1, 65, 2.5):
        with pytest.raises(ValueError, match=rf"workers: expected an integer from 1 to 64; received {bad!r}"):
            D.train("torch", TASK, PRESET, bad, 1, 32, tmp_path / "w.safetensors", init=init)
    assert not list(tmp_path.iterdir())
    assert os.environ.get("TF_CONFIG") is None
