"""Launching a data-parallel training job of either twin on this machine: N worker processes on loopback.

PyTorch: torchrun (``python -m torch.distributed.run``) starts ``pytorch_impl.data_parallel`` N times with its
rendezvous on 127.0.0.1. TensorFlow: N processes of ``tensorflow_impl.data_parallel``, each with a TF_CONFIG
naming the N workers' addresses and its own index, as MultiWorkerMirroredStrategy reads them. Both run the
existing engines (DDP with gloo or nccl; tf.distribute collectives); this module only builds the commands,
gives each worker its share of the CPU threads, and bounds the job in time: a worker that dies, a port that
will not open or a job that hangs ends with an error naming the worker and its last lines, and every process
of the job is killed (its own process group), so none is left behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.specs import FRAMEWORKS, check_framework

ROOT = Path(__file__).resolve().parent.parent
MODULES = {"torch": "pytorch_impl.data_parallel", "tensorflow": "tensorflow_impl.data_parallel"}
MAX_WORKERS = 64


class DistributedError(RuntimeError):
    """A distributed job that failed or timed out; the message names the worker and its last output."""


@dataclass
class Job:
    """A running job: its processes (one process group each) and their log files."""

    framework: str
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def kill(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self.processes:
            proc.wait()


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 now (held open together while chosen, then released)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def check_workers(workers: int) -> int:
    if not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers: expected an integer from 1 to {MAX_WORKERS}; received {workers!r}")
    return workers


def _tail(path: Path, lines: int = 8) -> str:
    """A worker's cause of failure (the last Python exception line in its log, torchrun's summary follows it)
    and its last lines."""
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    causes = [line.split("]: ", 1)[-1] for line in text if re.match(r"^(\[rank\d+\]: )?[\w.]+(Error|Exception): ", line)
              and "ChildFailedError" not in line]  # torchrun's own summary names no cause
    return (f"{causes[0]}\n" if causes else "") + "\n".join(text[-lines:])


def start(framework: str, worker_args: list[str], workers: int, log_dir: Path, threads: int | None = None) -> Job:
    """Start the job's processes; their stdout and stderr go to ``log_dir/worker-<i>.log``."""
    check_framework(framework)
    check_workers(workers)
    log_dir.mkdir(parents=True, exist_ok=True)
    per_worker = threads or max(1, (os.cpu_count() or 1) // workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(per_worker), "TF_NUM_INTRAOP_THREADS": str(per_worker),
           "TF_NUM_INTEROP_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    job = Job(framework)
    if framework == "torch":
        (port,) = free_ports(1)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(workers),
               "--master-addr", "127.0.0.1", "--master-port", str(port), "--max-restarts", "0",
               "-m", MODULES["torch"], *worker_args]
        commands = [(cmd, env)]
    else:
        addresses = [f"127.0.0.1:{p}" for p in free_ports(workers)]
        commands = [([sys.executable, "-m", MODULES["tensorflow"], *worker_args],
                     {**env, "TF_CONFIG": json.dumps({"cluster": {"worker": addresses},
                                                      "task": {"type": "worker", "index": i}})})
                    for i in range(workers)] if workers > 1 else [
            ([sys.executable, "-m", MODULES["tensorflow"], *worker_args], {k: v for k, v in env.items()
                                                                           if k != "TF_CONFIG"})]
    for i, (cmd, cmd_env) in enumerate(commands):
        log = log_dir / f"worker-{i}.log"
        with open(log, "wb") as out:
            job.processes.append(subprocess.Popen(cmd, cwd=ROOT, env=cmd_env, stdout=out, stderr=subprocess.STDOUT,
                                                  start_new_session=True))
        job.logs.append(log)
    return job


def wait(job: Job, timeout_s: float) -> float:
    """Wait for every process of ``job``; seconds taken. The first failure, or the time limit, kills the rest
    and raises DistributedError with that worker's last lines."""
    started = time.perf_counter()
    try:
        while True:
            codes = [p.poll() for p in job.processes]
            failed = [i for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i = failed[0]
                raise DistributedError(f"{job.framework} worker {i} exited with code {codes[i]}; its last lines:\n"
                                       f"{_tail(job.logs[i])}")
            if all(c == 0 for c in codes):
                return time.perf_counter() - started
            if time.perf_counter() - started > timeout_s:
                raise DistributedError(f"{job.framework} job did not finish within {timeout_s:.0f} s; worker 0's "
                                       f"last lines:\n{_tail(job.logs[0])}")
            time.sleep(0.1)
    finally:
        job.kill()


def initial_weights(task: str, preset: str, path: Path) -> Path:
    """The canonical initial weights both frameworks start from: the torch twin's seeded initialisation."""
    import torch

    from pytorch_impl import bridge
    from shared.specs import get_spec

    from .frameworks import load_twin

    spec = get_spec(task, preset)
    torch.manual_seed(spec.train.seed)
    bridge.save_weights(load_twin("torch", task).task.build_model(spec), path)
    return path


def train(framework: str, task: str, preset: str, workers: int, steps: int, global_batch: int, out: Path,
          init: Path | None = None, timeout_s: float = 300.0, device: str = "cpu") -> dict:
    """Train ``steps`` steps of ``global_batch`` images on ``workers`` processes; rank 0 writes the weights to
    ``out`` (safetensors, with the per-step losses in its metadata). Returns what the job reported."""
    from shared.weights import load_file, read_metadata

    check_workers(workers)
    if framework not in FRAMEWORKS:
        check_framework(framework)
    out = Path(out)
    init = init or initial_weights(task, preset, out.with_suffix(".init.safetensors"))
    args = ["--task", task, "--preset", preset, "--init", str(init), "--steps", str(steps), "--global-batch",
            str(global_batch), "--out", str(out), "--device", device]
    job = start(framework, args, workers, out.parent / f"{out.stem}-logs")
    seconds = wait(job, timeout_s)
    meta = read_metadata(out)
    return {"framework": framework, "workers": workers, "steps": steps, "global_batch": global_batch,
            "weights": load_file(out), "losses": [float(v) for v in meta["losses"].split(",")],
            "train_seconds": float(meta["seconds"]), "job_seconds": seconds,
            "images_per_s": steps * global_batch / float(meta["seconds"])}
