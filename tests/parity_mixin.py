"""One parity test class that every task reuses: a task's test file states only what differs.

    class TestDetectionParity(TwinParityMixin):
        task = "detection"
"""

from __future__ import annotations

import pytest

from compare.parity import run_parity


def assert_all_ok(entries: list[dict]) -> None:
    """Fail on no comparisons or on any breach, listing every breach with its tolerance."""
    assert entries, "no comparisons were made"
    bad = [f"{e['a']} vs {e['b']} {e['what']}: max_abs {e['max_abs']:.3g} > tol {e['tol']:.3g} {e.get('error', '')}"
           for e in entries if not e["ok"]]
    assert not bad, "\n".join(bad)


class TwinParityMixin:
    task: str = ""
    preset: str = "tiny"

    def _check(self, level: str) -> list[dict]:
        entries = run_parity(self.task, self.preset, (level,))
        assert entries, f"{self.task}: parity level {level!r} produced no comparisons"
        breaches = [f"{e['a']} vs {e['b']} {e['what']}: max_abs {e['max_abs']:.3g} > tol {e['tol']:.3g}"
                    f"{' (' + e['error'] + ')' if 'error' in e else ''}" for e in entries if not e["ok"]]
        assert not breaches, f"{self.task} {level} parity breaches:\n" + "\n".join(breaches)
        return entries

    def test_forward_both_ways(self):
        entries = self._check("forward")
        assert {(e["a"], e["b"]) for e in entries} == {("torch", "tensorflow"), ("tensorflow", "torch")}

    def test_loss_and_gradients(self):
        entries = self._check("gradients")
        assert any(e["what"].startswith("gradients/") for e in entries)
        assert any(e["what"].startswith("loss/") for e in entries)

    def test_training_trajectory(self):
        entries = self._check("training")
        assert any(e["what"].startswith("training/loss") for e in entries)

    @pytest.mark.export
    def test_onnx_exports(self):
        entries = self._check("onnx")
        pairs = {(e["a"], e["b"]) for e in entries}
        assert ("onnxruntime-from-torch", "onnxruntime-from-tensorflow") in pairs
        assert ("torch", "onnxruntime-from-torch") in pairs and ("tensorflow", "onnxruntime-from-tensorflow") in pairs


def torch_trained_weights(twins, spec, split, batch: int, steps: int, max_loss_ratio: float) -> dict:
    """Canonical weights after ``steps`` torch SGD steps (constant rate, batches of ``batch`` from the
    shared batch plan) from the shared initialisation, checked to have cut the loss below
    ``max_loss_ratio`` of its start: a trained model for the L5 (post-processing) tests."""
    import dataclasses

    from compare.parity import same_init
    from shared.data import batch_plan

    models, _ = same_init(twins, spec, "torch", 0)
    train = dataclasses.replace(spec.train, schedule="constant")
    epochs = -(-steps * batch // len(split))
    batches = [idx for epoch in batch_plan(len(split), batch, epochs, 0) for idx in epoch][:steps]
    losses = twins["torch"].task.train_steps(models["torch"], spec, split.images, split.targets, batches, train)
    assert losses[-1] < max_loss_ratio * losses[0], losses
    return twins["torch"].bridge.export_weights(models["torch"])
