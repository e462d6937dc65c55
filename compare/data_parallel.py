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
from typing import Callable

from shared.specs import check_framework, twin_task

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


@dataclass(frozen=True)
class Cluster:
    """Where the job's workers are: ``nodes`` machines with ``workers`` processes each, this one ``node_rank``.

    PyTorch needs the master's address only (torchrun's rendezvous); TensorFlow needs every worker's address in
    TF_CONFIG: worker ``i`` of node ``n`` listens on ``hosts[n]:port + 1 + n * workers + i`` (``port`` the
    master's), so every node derives the same list from the same command line.
    """

    nodes: int = 1
    node_rank: int = 0
    master: str = ""  # "host:port"; empty: this machine alone, on free loopback ports
    hosts: tuple[str, ...] = ()  # one per node (TensorFlow); empty: every node at the master's host

    def __post_init__(self):
        if not 1 <= self.nodes <= MAX_WORKERS:
            raise ValueError(f"nodes: expected an integer from 1 to {MAX_WORKERS}; received {self.nodes!r}")
        if not 0 <= self.node_rank < self.nodes:
            raise ValueError(f"node rank: expected 0 to {self.nodes - 1}; received {self.node_rank!r}")
        if self.nodes > 1 and not re.fullmatch(r"[\w.\-]+:\d{1,5}", self.master):
            raise ValueError(f"master: expected HOST:PORT of node 0 when there are {self.nodes} nodes; received "
                             f"{self.master!r}")
        if self.hosts and len(self.hosts) != self.nodes:
            raise ValueError(f"hosts: expected one per node ({self.nodes}); received {list(self.hosts)}")

    def address(self) -> tuple[str, int]:
        host, port = self.master.rsplit(":", 1)
        return host, int(port)

    def tf_workers(self, workers: int) -> list[str]:
        host, port = self.address()
        hosts = self.hosts or (host,) * self.nodes
        return [f"{hosts[n]}:{port + 1 + n * workers + i}" for n in range(self.nodes) for i in range(workers)]


def check_network(framework: str, workers: int, cluster: Cluster, connect_timeout_s: float = 30.0) -> None:
    """Before any worker starts: on node 0, the ports this node's processes will listen on must be free (torch:
    the master's, where torchrun's store listens; TensorFlow: each worker's); on the other nodes, node 0 must
    answer (torch: the master's port; TensorFlow: worker 0's), waited for up to ``connect_timeout_s`` since
    the nodes start in any order. A clear DistributedError otherwise, instead of a job that hangs until the
    engines' own rendezvous time out (minutes)."""
    if not cluster.master:
        return  # this machine alone, on ports chosen free a moment ago
    host, port = cluster.address()
    if cluster.node_rank == 0:
        listen = [port] if framework == "torch" else [int(a.rsplit(":", 1)[1]) for a in cluster.tf_workers(workers)
                                                       [:workers]]
        for p in listen:
            probe = socket.socket()
            try:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(("", p))
            except OSError as err:
                raise DistributedError(f"port {p} on this machine is in use ({err.strerror}); node 0 listens there "
                                       f"({'the master' if framework == 'torch' else 'a TensorFlow worker'}): stop "
                                       f"what holds it or choose another --master port") from None
            finally:
                probe.close()
        return
    target = (host, port) if framework == "torch" else tuple(cluster.tf_workers(workers)[0].rsplit(":", 1))
    address = (target[0], int(target[1]))
    try:
        socket.getaddrinfo(*address)
    except socket.gaierror as err:
        raise DistributedError(f"master {cluster.master}: cannot resolve {address[0]!r} ({err.strerror})") from None
    deadline, last = time.monotonic() + connect_timeout_s, ""
    while True:
        try:
            with socket.create_connection(address, timeout=min(2.0, connect_timeout_s)):
                return
        except OSError as err:
            last = err.strerror or type(err).__name__
        if time.monotonic() >= deadline:
            raise DistributedError(f"node 0 at {address[0]}:{address[1]} did not answer within "
                                   f"{connect_timeout_s:.0f} s ({last}); start node 0 first, and check the address "
                                   f"and that the port is open between the machines")
        time.sleep(0.5)


def start(framework: str, worker_args: list[str], workers: int, log_dir: Path, threads: int | None = None,
          max_restarts: int = 0, attempt: int = 0, cluster: Cluster = Cluster()) -> Job:
    """Start this node's processes of the job; their output goes to ``log_dir/worker-<i>[.<attempt>].log``."""
    check_framework(framework)
    check_workers(workers)
    log_dir.mkdir(parents=True, exist_ok=True)
    per_worker = threads or max(1, (os.cpu_count() or 1) // workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(per_worker), "TF_NUM_INTRAOP_THREADS": str(per_worker),
           "TF_NUM_INTEROP_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("TF_CONFIG", None)
    job = Job(framework)
    if framework == "torch":
        # torchrun restarts every local worker when one dies (its elastic agent); they resume from the checkpoint.
        host, port = cluster.address() if cluster.master else ("127.0.0.1", free_ports(1)[0])
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(cluster.nodes), "--node-rank",
               str(cluster.node_rank), "--nproc-per-node", str(workers), "--master-addr", host, "--master-port",
               str(port), "--max-restarts", str(max_restarts), "-m", MODULES["torch"], *worker_args]
        commands = [(cmd, env)]
    elif workers * cluster.nodes == 1:
        commands = [([sys.executable, "-m", MODULES["tensorflow"], *worker_args], env)]
    else:
        addresses = (cluster.tf_workers(workers) if cluster.master
                     else [f"127.0.0.1:{p}" for p in free_ports(workers)])
        first = cluster.node_rank * workers
        commands = [([sys.executable, "-m", MODULES["tensorflow"], *worker_args],
                     {**env, "TF_CONFIG": json.dumps({"cluster": {"worker": addresses},
                                                      "task": {"type": "worker", "index": first + i}})})
                    for i in range(workers)]
    suffix = f".{attempt}" if attempt else ""
    for i, (cmd, cmd_env) in enumerate(commands):
        log = log_dir / f"worker-{i}{suffix}.log"
        with open(log, "wb") as out:
            job.processes.append(subprocess.Popen(cmd, cwd=ROOT, env=cmd_env, stdout=out, stderr=subprocess.STDOUT,
                                                  start_new_session=True))
        job.logs.append(log)
    return job


def wait(job: Job, timeout_s: float, restart: Callable[[int], Job] | None = None, max_restarts: int = 0) -> float:
    """Wait for every process of ``job``; seconds taken. A failing worker is restarted with the whole job
    (``restart(attempt)``, at most ``max_restarts`` times: TensorFlow's workers, which have no agent of their
    own); after that, the first failure or the time limit kills the rest and raises DistributedError with the
    worker's error and last lines."""
    started, attempt = time.perf_counter(), 0
    try:
        while True:
            codes = [p.poll() for p in job.processes]
            failed = [i for i, c in enumerate(codes) if c not in (None, 0)]
            if failed and restart is not None and attempt < max_restarts:
                job.kill()
                attempt += 1
                job = restart(attempt)
                continue
            if failed:
                i = failed[0]
                raise DistributedError(f"{job.framework} worker {i} exited with code {codes[i]}; its last lines:\n"
                                       f"{_tail(job.logs[i])}")
            if all(c == 0 for c in codes):
                return time.perf_counter() - started
            if time.perf_counter() - started > timeout_s:
                raise DistributedError(f"{job.framework} job did not finish within {timeout_s:.0f} s; worker 0's "
                                       f"last lines:\n{_tail(job.logs[0])}")
            time.sleep(0.05)
    finally:
        job.kill()


def worst_difference(a: dict, b: dict) -> tuple[float, str]:
    """The largest |a - b| / max|a| over the tensors of two canonical weight dicts, and its key: how far two
    runs that should end at the same weights are apart, each tensor on its own scale."""
    import numpy as np

    if set(a) != set(b):
        raise ValueError(f"the two sets of weights hold different tensors: only in the first "
                         f"{sorted(set(a) - set(b))[:5]}, only in the second {sorted(set(b) - set(a))[:5]}")
    return max((float(np.abs(a[k] - b[k]).max() / max(float(np.abs(a[k]).max()), 1e-12)), k) for k in a)


def initial_weights(task: str, preset: str, path: Path, seed: int | None = None) -> Path:
    """The canonical initial weights both frameworks start from: the torch twin's initialisation, seeded with
    ``seed`` (default: the preset's training seed)."""
    import torch

    from pytorch_impl import bridge
    from shared.specs import get_spec

    from .frameworks import load_twin

    spec = get_spec(task, preset)
    torch.manual_seed(spec.train.seed if seed is None else seed)
    bridge.save_weights(load_twin("torch", task).task.build_model(spec), path)
    return path


def train(framework: str, task: str, preset: str, workers: int, steps: int, global_batch: int, out: Path,
          init: Path | None = None, timeout_s: float = 300.0, device: str = "cpu", checkpoint: Path | None = None,
          every: int = 0, max_restarts: int = 0, cluster: Cluster = Cluster(), seed: int | None = None,
          lr: float | None = None, connect_timeout_s: float = 30.0) -> dict:
    """Train ``steps`` steps of ``global_batch`` images on ``workers`` processes; rank 0 writes the weights to
    ``out`` (safetensors, with the per-step losses in its metadata). Returns what the job reported.

    With ``checkpoint`` (a folder) the state is saved every ``every`` steps, and a job whose worker dies is
    restarted (up to ``max_restarts`` times: torchrun's agent for PyTorch, this launcher for TensorFlow) and
    resumes from it; ``resumes`` lists each restart's lost work (shared.checkpoint). On several machines
    (``cluster``) each node runs this with its node rank; node 0 writes ``out`` and returns the figures, the
    others return once their workers are done. ``seed`` and ``lr`` replace the preset's batch-plan seed and
    learning rate. The network is checked first (``check_network``: a port in use, node 0 not answering
    within ``connect_timeout_s``)."""
    from shared import checkpoint as CK
    from shared.weights import load_file, read_metadata

    check_workers(workers)
    check_framework(framework)
    check_network(framework, workers, cluster, connect_timeout_s)
    out = Path(out)
    init = init or initial_weights(task, preset, out.with_suffix(".init.safetensors"))
    args = ["--task", twin_task(task), "--preset", preset, "--init", str(init), "--steps", str(steps), "--global-batch",
            str(global_batch), "--out", str(out), "--device", device]
    args += [a for name, value in (("--seed", seed), ("--lr", lr)) if value is not None for a in (name, str(value))]
    if checkpoint is not None:
        Path(checkpoint).mkdir(parents=True, exist_ok=True)
        args += ["--checkpoint", str(checkpoint), "--every", str(every)]
    logs = out.parent / f"{out.stem}-logs"
    agent_restarts = max_restarts if framework == "torch" else 0
    job = start(framework, args, workers, logs, max_restarts=agent_restarts, cluster=cluster)
    relaunch = None if framework == "torch" else (
        lambda attempt: start(framework, args, workers, logs, attempt=attempt, cluster=cluster))
    seconds = wait(job, timeout_s, relaunch, max_restarts if relaunch else 0)
    if cluster.node_rank:
        return {"framework": framework, "workers": workers, "node_rank": cluster.node_rank, "job_seconds": seconds}
    meta, resumes = read_metadata(out), CK.resumes(checkpoint) if checkpoint is not None else []
    # The last attempt's steps after its first (warm) were timed.
    timed = steps - (resumes[-1]["from_step"] if resumes else 0) - 1
    warm = float(meta["seconds"])
    return {"framework": framework, "workers": workers, "steps": steps, "global_batch": global_batch,
            "weights": load_file(out), "losses": [float(v) for v in meta["losses"].split(",")],
            "train_seconds": warm, "first_step_seconds": float(meta["first_step_seconds"]), "job_seconds": seconds,
            "images_per_s": timed * global_batch / warm if timed > 0 and warm > 0 else None, "resumes": resumes}


def train_killing_a_worker(framework: str, task: str, preset: str, workers: int, steps: int, global_batch: int,
                           out: Path, checkpoint: Path, every: int, kill_at: int, rank: int = 1, **kwargs) -> dict:
    """``train`` with a checkpoint every ``every`` steps, during which worker ``rank`` is sent SIGKILL once it
    has done step ``kill_at`` (as its steps log in ``checkpoint`` shows); the job restarts once and resumes.
    Returns ``train``'s figures plus ``killed_at`` (the step the worker had reached)."""
    import threading

    from shared import checkpoint as CK

    if not 0 <= rank < workers or not 1 <= kill_at < steps:
        raise ValueError(f"kill: expected a rank below {workers} and a step from 1 to {steps - 1}; received rank "
                         f"{rank}, step {kill_at}")
    found: dict = {}
    failure: list[BaseException] = []

    def run() -> None:
        try:
            found.update(train(framework, task, preset, workers, steps, global_batch, out, checkpoint=checkpoint,
                               every=every, max_restarts=1, **kwargs))
        except BaseException as err:  # noqa: BLE001 - raised in the caller's thread below
            failure.append(err)

    job = threading.Thread(target=run)
    job.start()
    killed = None
    while job.is_alive() and killed is None:
        rows = CK.steps_log(checkpoint, rank)
        if rows and rows[-1][1] >= kill_at:
            killed = rows[-1]
            os.kill(killed[0], signal.SIGKILL)
        time.sleep(0.005)
    job.join()
    if failure:
        raise failure[0]
    if killed is None:
        raise DistributedError(f"{framework} job ended before worker {rank} reached step {kill_at}")
    return {**found, "killed_at": killed[1]}
