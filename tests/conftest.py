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
