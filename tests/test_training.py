"""The training twins learn, report per-epoch history, and agree on what they learned."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from compare.frameworks import load_twin
from shared.data import load
from shared.specs import get_spec


@pytest.fixture(scope="module")
def learnable_spec():
    # Enough steps (10 epochs x 38 batches) for BatchNorm running statistics to settle.
    spec = get_spec("classification", "tiny")
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=10, lr=0.05),
                               data=dataclasses.replace(spec.data, n_train=1200, n_test=300))


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_twin_learns_real_digits(framework, learnable_spec):
    twin = load_twin(framework, "classification")
    data = load(learnable_spec)
    model, history = twin.task.train(learnable_spec, data, progress=False)
    assert [row["epoch"] for row in history] == list(range(1, 11))
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    metrics = twin.task.evaluate(model, data.test, learnable_spec)
    assert metrics["accuracy"] >= 0.8, metrics  # chance is 0.1
    assert len(metrics["per_class_recall"]) == 10 and min(metrics["per_class_recall"]) > 0.5


@pytest.mark.parametrize("optimizer,schedule", [("sgd", "constant"), ("sgd", "cosine"), ("adam", "cosine")])
def test_optimizers_take_the_same_steps(optimizer, schedule, tiny_spec, tiny_data):
    """Five steps of each optimiser and schedule from one init: the twins' weights stay together."""
    from compare.frameworks import load_twins
    from compare.parity import same_init

    twins = load_twins("classification")
    train = dataclasses.replace(tiny_spec.train, optimizer=optimizer, schedule=schedule,
                                lr=0.05 if optimizer == "sgd" else 1e-3)
    models, _ = same_init(twins, tiny_spec, "torch", seed=1)
    batches = [np.arange(i * 16, (i + 1) * 16) for i in range(5)]
    losses, weights = {}, {}
    for fw, t in twins.items():
        losses[fw] = t.task.train_steps(models[fw], tiny_spec, tiny_data.train.images, tiny_data.train.labels,
                                        batches, train)
        weights[fw] = t.bridge.export_weights(models[fw])
    np.testing.assert_allclose(losses["torch"], losses["tensorflow"], rtol=1e-5)
    for key, value in weights["torch"].items():
        scale = np.abs(value).max()
        assert np.abs(value - weights["tensorflow"][key]).max() <= 1e-3 * scale, key


def test_weight_decay_skips_batchnorm_and_biases(tiny_spec):
    """Coupled decay on kernels only, in both twins: a zero gradient leaves BN and bias untouched."""
    import keras
    import torch

    from pytorch_impl.training import make_optimizer as torch_opt
    from tensorflow_impl.training import make_optimizer as tf_opt

    train = dataclasses.replace(tiny_spec.train, lr=0.1, weight_decay=0.01, momentum=0.0, schedule="constant")
    kernel, bias = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2))
    module = torch.nn.Module()
    module.kernel, module.bias = kernel, bias
    opt = torch_opt(module, train)
    kernel.grad, bias.grad = torch.zeros(2, 2), torch.zeros(2)
    opt.step()
    k_var, b_var = keras.Variable(np.ones((2, 2), np.float32)), keras.Variable(np.ones(2, np.float32))
    tf_opt(None, train).apply([np.zeros((2, 2), np.float32), np.zeros(2, np.float32)], [k_var, b_var])
    np.testing.assert_allclose(kernel.detach().numpy(), 1 - 0.1 * 0.01)
    np.testing.assert_allclose(k_var.numpy(), kernel.detach().numpy(), rtol=1e-7)
    np.testing.assert_array_equal(bias.detach().numpy(), 1.0)
    np.testing.assert_array_equal(b_var.numpy(), 1.0)


def test_batchnorm_running_variance_is_unbiased_in_both(tiny_spec):
    import torch

    from pytorch_impl.layers import BatchNorm2d as TorchBN
    from tensorflow_impl.layers import BatchNorm2d as KerasBN

    x = np.random.default_rng(0).normal(2.0, 3.0, size=(4, 3, 3, 2)).astype(np.float32)
    tbn = TorchBN(2, 1e-5, 0.1).train()
    tbn(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    kbn = KerasBN(2, 1e-5, 0.1)
    kbn(x, training=True)
    np.testing.assert_allclose(kbn.moving_variance.numpy(), tbn.running_var.numpy(), rtol=1e-5)
    np.testing.assert_allclose(kbn.moving_mean.numpy(), tbn.running_mean.numpy(), rtol=1e-5)
    n = 4 * 3 * 3
    np.testing.assert_allclose(tbn.running_var.numpy(), 0.9 + 0.1 * x.var(axis=(0, 1, 2)) * n / (n - 1), rtol=1e-5)
