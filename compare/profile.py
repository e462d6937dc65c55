"""Where a training step's time goes, per operation, in each framework (``twinvision profile``).

Runs the framework's bare training step (``training.reference_loop``, the same
yardstick as the report's training-speed probe) on a task's model under the
framework's own profiler, and sums the time of each operation type:
``torch.profiler`` for PyTorch, TensorFlow's profiler (its XSpace trace read
back) for TensorFlow. Operation times are summed over threads, so they can add
up to more than the wall time of a step. This is how the oneDNN default of
TensorFlow on AVX2 CPUs was found: with it off, ``Conv2DBackpropInput`` and
``Conv2DBackpropFilter`` (Eigen) dominate; with it on, their ``_MklNative``
versions take a quarter of that.
"""

from __future__ import annotations

import collections
import glob
import tempfile
import time

from shared.data import batch_plan, training_targets


def _batches(spec, split, steps: int) -> list:
    batch = spec.train.batch_size
    full = [idx for epoch in batch_plan(len(split), batch, 2 + steps // max(len(split) // batch, 1), spec.train.seed)
            for idx in epoch if len(idx) == batch]
    if len(full) < steps + 2:
        raise ValueError(f"profile: needs {steps + 2} full batches of {batch}; the split gives {len(full)}")
    return full[:steps + 2]


def _torch_ops(run, batches) -> dict[str, float]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(batches)
    # Self time: each op's own time, not its children's (aten::convolution holds aten::mkldnn_convolution).
    return {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages()}


def _tensorflow_ops(run, batches) -> dict[str, float]:
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            run(batches)
        finally:
            tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1], "rb") as f:
            space.ParseFromString(f.read())
    totals: collections.Counter = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if "TF Executor" not in line.name and "tf_Compute" not in line.name:
                continue  # the op events; the Python and runtime lines repeat them as nested scopes
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                # "scope/op_name:OpType"; the executor's own spans ("ExecutorState::Process") and thread-pool
                # spans wrap the ops and would count their time twice.
                if ":" in name and "::" not in name:
                    totals[name.split(":")[-1]] += event.duration_ps / 1e9
    return dict(totals)


def profile_step(twin, spec, split, model, steps: int = 10) -> dict:
    """Profile ``steps`` bare training steps of ``model`` (after two untimed ones); ms per step, per op type."""
    images, targets = split.images, training_targets(split, spec)
    batches = _batches(spec, split, steps)
    run = twin.training.reference_loop(model, spec, twin.task.compute_loss, images, targets)
    run(batches[:2])  # tracing, allocation
    started = time.perf_counter()
    ops = (_torch_ops if twin.framework == "torch" else _tensorflow_ops)(run, batches[2:])
    wall = (time.perf_counter() - started) / steps * 1e3
    per_step = {name: ms / steps for name, ms in ops.items()}
    return {"framework": twin.framework, "steps": steps, "batch": spec.train.batch_size, "wall_ms_per_step": wall,
            "ops_ms_per_step": dict(sorted(per_step.items(), key=lambda kv: -kv[1]))}
