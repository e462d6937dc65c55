"""Stage ``compression``: pruning (both frameworks) and weight clustering (tfmot), each fine-tuned from the
reference weights: quality against measured sparsity, and the compressed size."""

from __future__ import annotations

import gzip
from pathlib import Path

from shared.metrics import primary_metric
from shared.weights import load_file

from .. import backends as B
from ..size import artifact_bytes
from . import RunContext
from .quantize import COMPRESSION

COMPRESSION_STEP = "compression: pruning and clustering"


def compression(ctx: RunContext, reference: dict, data) -> None:
    """``compression``: one row per variant (and the fp32 baselines): ``status`` ok, skipped for a declared
    limit of the toolkit (with its ``reason``) or failed (with its ``error``, also in the run's errors)."""
    ctx.step("compression", COMPRESSION_STEP)
    from pytorch_impl import bridge
    from pytorch_impl import quantize as PQ
    from tensorflow_impl import quantize as TQ

    from ..quantization import kernel_sparsity, tflite_kernel_sparsity

    cfg, spec, keys = COMPRESSION[ctx.profile], ctx.spec, tuple(ctx.spec.output_keys)
    tensors = ctx.twins["torch"].bridge.export_weights(reference["torch"])
    lr = spec.train.lr * 0.02
    rows = ctx.result.setdefault("compression", [])
    metric = primary_metric(spec.task)

    def tflite(filename, make):
        path = ctx.cache.path(filename) if make is None else ctx.cache.artifact(filename, make)[0]
        return path, B.tflite_runner(filename, path, ctx.threads, keys).predict(data.test.images, batch=32)

    def torch_pruned(sparsity, prune):
        """The pruned weights, fine-tuned once and cached as safetensors (as the TFLite files are)."""
        path, _ = ctx.cache.artifact(f"torch-pruned-{int(sparsity * 100)}.safetensors",
                                     lambda p: bridge.save_weights(prune(), p))
        model = bridge.load_weights(ctx.twins["torch"].task.build_model(spec), path)
        runner = B.module_runner("torch-pruned", model.eval(), keys, spec.input_shape)
        return path, runner.predict(data.test.images, batch=32)

    jobs = [("tflite-fp32", "tensorflow", {"sparsity": 0.0}, lambda: tflite("model-fp32.tflite", None)),
            ("torch-fp32", "torch", {"sparsity": 0.0}, lambda: torch_pruned(0.0, lambda: reference["torch"]))]
    for s in cfg["sparsities"]:
        jobs.append((f"tflite-pruned-{int(s * 100)}", "tensorflow", {"sparsity": s}, lambda s=s: tflite(
            f"model-pruned-{int(s * 100)}.tflite", lambda p: TQ.prune(tensors, spec, data.train, s, cfg["steps"], lr,
                                                                      p))))
        jobs.append((f"torch-pruned-{int(s * 100)}", "torch", {"sparsity": s}, lambda s=s: torch_pruned(
            s, lambda: PQ.prune(reference["torch"], spec, data.train, s, cfg["steps"], lr))))
    jobs.append((f"tflite-clustered-{cfg['clusters']}", "tensorflow", {"clusters": cfg["clusters"]}, lambda: tflite(
        f"model-clustered-{cfg['clusters']}.tflite", lambda p: TQ.cluster(tensors, spec, data.train, cfg["clusters"],
                                                                          cfg["steps"], cfg["cluster_lr"], p))))
    limit = getattr(spec, "export_limit", None)
    for variant, framework, setting, job in jobs:
        row = {"variant": variant, "framework": framework, **setting, "metric": metric}
        if limit and variant.startswith("tflite"):  # a TFLite file holds the exported graph of the whole model
            rows.append({**row, "status": "skipped", "reason": f"a TFLite file of the whole model, and {limit}"})
            continue
        try:
            path, outputs = job()
            measured = (tflite_kernel_sparsity(path) if str(path).endswith(".tflite")
                        else kernel_sparsity(load_file(path)))
            rows.append({**row, "status": "ok", "measured_sparsity": measured,
                         "quality": ctx.evaluate(outputs, data.test, framework)[metric],
                         "bytes": artifact_bytes(path), "gzip_bytes": len(gzip.compress(Path(path).read_bytes()))})
        except TQ.UnsupportedOpError as err:
            # A declared limit of the toolkit (tfmot takes only models with a tf_keras functional twin).
            rows.append({**row, "status": "skipped", "reason": f"UnsupportedOpError: {err}"})
        except Exception as err:  # noqa: BLE001
            rows.append({**row, "status": "failed", "error": ctx.fail(f"compression {variant}", err)})

__all__ = ["COMPRESSION_STEP", "compression"]
