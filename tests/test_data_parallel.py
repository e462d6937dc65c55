"""Data-parallel training (compare/data_parallel.py, pytorch_impl/data_parallel.py, tensorflow_impl/data_parallel.py):
two workers on loopback equal one process with the whole batch, in each framework, and the two frameworks'
distributed runs agree with each other; a failing job leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import pytest

from compare import data_parallel as D
from shared.data import full_batches, load, shard, training_targets
from shared.specs import FRAMEWORKS, get_spec

TASK, PRESET, STEPS = "classification", "tiny", 12
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
    batches = full_batches(len(data.train), batch, spec.train.epochs, spec.train.seed)[:STEPS]
    found = {}
    for fw in FRAMEWORKS:
        job = D.train(fw, TASK, PRESET, 2, STEPS, batch, out / f"{fw}-2.safetensors", init=init, timeout_s=300)
        assert job["resumes"] == []
        twin = load_twin(fw, TASK)
        model = twin.bridge.import_weights(twin.task.build_model(spec), load_file(init))
        losses = twin.task.train_steps(model, spec, data.train.images, training_targets(data.train, spec), batches,
                                       spec.train)
        found[fw] = {"job": job, "losses": losses, "weights": twin.bridge.export_weights(model)}
    return found


_worst = D.worst_difference


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


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_killed_worker_resumes_from_the_checkpoint_to_the_same_weights(framework, runs, init, spec, tmp_path):
    """SIGKILL to worker 1 at a random step: the job restarts (torchrun's agent; this launcher for TensorFlow),
    resumes from the last checkpoint (every 3 steps) and ends with the uninterrupted run's weights and losses;
    the work lost is recorded in steps and seconds."""
    import random

    folder, kill_at = tmp_path / "checkpoints", random.Random().randint(4, STEPS - 3)
    found = D.train_killing_a_worker(framework, TASK, PRESET, 2, STEPS, spec.train.batch_size,
                                     tmp_path / "w.safetensors", folder, every=3, kill_at=kill_at, init=init,
                                     timeout_s=300)
    assert found["killed_at"] >= kill_at
    (resume,) = found["resumes"]
    # Rank 0 saves before it records a step, so at most every - 1 = 2 steps are lost.
    assert resume["from_step"] % 3 == 0 and 0 <= resume["lost_steps"] == resume["reached"] - resume["from_step"] < 3
    assert resume["lost_seconds"] is None or resume["lost_seconds"] >= 0
    worst, key = _worst(runs[framework]["job"]["weights"], found["weights"])
    assert worst <= EQUIVALENCE, f"{framework}: {key} differs by {worst:.3g} after the restart"
    np.testing.assert_allclose(found["losses"], runs[framework]["job"]["losses"], rtol=EQUIVALENCE)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # checkpoints written atomically


@pytest.mark.slow  # a job and a one-process step of the SSD per framework: about 20 s (make test-all)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_detector_on_two_workers_equals_one_process(framework, tmp_path):
    """The same engines on the detection task (per-image targets): its losses are divided by a count of the
    batch (positive anchors), which each worker takes from the whole global batch (``batch_normaliser``;
    with each worker's own count the first loss was 6e-4 off). One step is compared: from the second on,
    hard-negative mining picks the top-k of nearly tied negatives, and a difference of 1e-7 in the weights
    swaps some of them (the loss stays within 1e-7, the gradient moves by about 0.2%; a 1e-7 nudge of the
    initial weights moves a detector's weights by 2e-3 within 4 steps in one process, measured)."""
    from compare.frameworks import load_twin
    from shared.weights import load_file

    task, steps = "detection", 1
    spec = get_spec(task, PRESET)
    init = D.initial_weights(task, PRESET, tmp_path / "init.safetensors")
    data = load(spec)
    batch = spec.train.batch_size
    batches = full_batches(len(data.train), batch, spec.train.epochs, spec.train.seed)[:steps]
    job = D.train(framework, task, PRESET, 2, steps, batch, tmp_path / "w.safetensors", init=init, timeout_s=300)
    twin = load_twin(framework, task)
    model = twin.bridge.import_weights(twin.task.build_model(spec), load_file(init))
    losses = twin.task.train_steps(model, spec, data.train.images, training_targets(data.train, spec), batches,
                                   spec.train)
    np.testing.assert_allclose(job["losses"], losses, rtol=EQUIVALENCE)
    worst, key = _worst(twin.bridge.export_weights(model), job["weights"])
    assert worst <= EQUIVALENCE, f"{framework}: {key} differs by {worst:.3g} of its max |value|"


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


def test_the_workers_shards_make_up_each_global_batch():
    batch = np.arange(32)
    assert np.array_equal(np.concatenate([shard(batch, r, 4) for r in range(4)]), batch)
    with pytest.raises(ValueError, match="a global batch of 32 images does not split over 3 workers"):
        shard(batch, 0, 3)


def test_worker_count_is_checked_before_any_process_starts(init, tmp_path):
    for bad in (0, -1, 65, 2.5):
        with pytest.raises(ValueError, match=rf"workers: expected an integer from 1 to 64; received {bad!r}"):
            D.train("torch", TASK, PRESET, bad, 1, 32, tmp_path / "w.safetensors", init=init)
    assert not list(tmp_path.iterdir())
    assert os.environ.get("TF_CONFIG") is None


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_port_in_use_on_node_0_is_named_before_any_worker_starts(framework, init, tmp_path):
    import socket

    holder = socket.create_server(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    # torch's node 0 listens on the master's port; TensorFlow's worker 0 on the next one
    master = port if framework == "torch" else port - 1
    started = time.monotonic()
    try:
        with pytest.raises(D.DistributedError, match=rf"port {port} on this machine is in use"):
            D.train(framework, TASK, PRESET, 1, 1, 32, tmp_path / "w.safetensors", init=init,
                    cluster=D.Cluster(2, 0, f"127.0.0.1:{master}"))
    finally:
        holder.close()
    assert time.monotonic() - started < 5 and not (tmp_path / "w-logs").exists()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_unreachable_master_ends_with_a_clear_error_within_the_connect_timeout(framework, init, tmp_path):
    port = D.free_ports(1)[0]  # nothing listens there: node 0 was never started
    started = time.monotonic()
    with pytest.raises(D.DistributedError, match=r"node 0 at 127\.0\.0\.1:\d+ did not answer within 2 s .*start "
                                                 r"node 0 first"):
        D.train(framework, TASK, PRESET, 1, 1, 32, tmp_path / "w.safetensors", init=init,
                cluster=D.Cluster(2, 1, f"127.0.0.1:{port}"), connect_timeout_s=2)
    assert time.monotonic() - started < 6
    with pytest.raises(D.DistributedError, match=r"master no-such-host\.invalid:29500: cannot resolve"):
        D.train(framework, TASK, PRESET, 1, 1, 32, tmp_path / "w.safetensors", init=init,
                cluster=D.Cluster(2, 1, "no-such-host.invalid:29500"), connect_timeout_s=2)


def _master_port() -> int:
    """A free port whose next two are free too (TensorFlow's two workers listen right after the master's)."""
    import socket

    for _ in range(50):
        port = D.free_ports(1)[0]
        try:
            probes = [socket.create_server(("127.0.0.1", port + k)) for k in (1, 2)]
        except OSError:
            continue
        for probe in probes:
            probe.close()
        return port
    raise RuntimeError("no three consecutive free ports on 127.0.0.1")


@pytest.mark.slow  # two command lines per framework, each importing both frameworks: about 40 s (make test-all)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_readme_two_node_commands_on_one_machine_equal_two_workers(framework, runs, tmp_path):
    """The README's several-machines form, both nodes on loopback with one worker each: node 0 saves the weights
    of the 2-worker single-node job, node 1 says it is done."""
    import signal
    import sys

    port = _master_port()

    def node(rank: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "compare.cli", "train", "--task", TASK, "--framework", framework, "--preset", PRESET,
             "--workers", "1", "--nodes", "2", "--node-rank", str(rank), "--master", f"127.0.0.1:{port}", "--steps",
             str(STEPS), "--out", str(tmp_path / f"node{rank}.safetensors")],
            cwd=D.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    nodes = [node(0), node(1)]
    try:
        outputs = [proc.communicate(timeout=300)[0] for proc in nodes]
    finally:
        for proc in nodes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert [proc.returncode for proc in nodes] == [0, 0], outputs
    assert "on 2 worker(s) (2 nodes, this one 0)" in outputs[0] and "final metrics" in outputs[0], outputs[0]
    assert "node 1: its 1 worker(s) finished" in outputs[1], outputs[1]
    assert not (tmp_path / "node1.safetensors").exists()
    from shared.weights import load_file

    worst, key = _worst(runs[framework]["job"]["weights"], load_file(tmp_path / "node0.safetensors"))
    assert worst <= EQUIVALENCE, f"{framework}: {key} differs by {worst:.3g} from the single-node job"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_adam_checkpoint_resumes_to_the_uninterrupted_weights(framework, init, tmp_path):
    """Adam's moments and step count go into the checkpoint (canonical layout, no pickle): 3 steps, save, a
    fresh model and optimiser load it, and 3 more steps on both end at the same weights; an SGD checkpoint is
    refused by an Adam job with a clear error."""
    import dataclasses
    import importlib

    from compare.frameworks import load_twin
    from shared.weights import load_file, read_metadata

    spec = get_spec(TASK, PRESET)
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, optimizer="adam", lr=1e-3))
    twin = load_twin(framework, TASK)
    dp = importlib.import_module(f"{'pytorch_impl' if framework == 'torch' else 'tensorflow_impl'}.data_parallel")
    data = load(spec)
    x, y = twin.tensors.to_native(data.train.images), twin.tensors.targets_to_native(training_targets(data.train, spec))
    batches = full_batches(len(data.train), 32, 1, 0)[:6]

    def trainer():
        model = twin.bridge.import_weights(twin.task.build_model(spec), load_file(init))
        made = twin.training.Trainer(model, spec, twin.task.compute_loss, total_steps=len(batches))
        optimizer = getattr(made, "optimizer", None) or made.adapter.optimizer
        if framework == "tensorflow":
            optimizer.build(model.trainable_variables)
        return model, made, optimizer

    def step(made, idx):
        return made.step(x[idx], y[idx]) if framework == "torch" else made.step(np.take(data.train.images, idx, 0),
                                                                                  training_targets(data.train, spec)[idx])

    model, made, optimizer = trainer()
    losses = [step(made, idx) for idx in batches[:3]]
    path = tmp_path / "adam.safetensors"
    dp.save_checkpoint(path, model, optimizer, losses)
    assert read_metadata(path)["optimizer"] == "adam"
    assert any(k.startswith("optimizer.adam_v.") for k in load_file(path))
    model2, made2, optimizer2 = trainer()
    assert dp.load_checkpoint(path, model2, optimizer2) == pytest.approx(losses)
    if framework == "torch":
        for _ in losses:  # the schedule at the checkpoint's step (the TensorFlow twin's follows its iterations)
            made2.schedule.step()
    for idx in batches[3:]:
        step(made, idx), step(made2, idx)
    worst, key = _worst(twin.bridge.export_weights(model), twin.bridge.export_weights(model2))
    assert worst <= EQUIVALENCE, f"{framework}: {key} differs by {worst:.3g} after resuming Adam"

    sgd = tmp_path / "sgd.safetensors"
    from shared.weights import save_file

    save_file({**load_file(path)}, sgd, {**read_metadata(path), "optimizer": "sgd"})
    with pytest.raises(ValueError, match=r"holds sgd state; this job's optimizer is adam"):
        dp.load_checkpoint(sgd, *trainer()[::2])
