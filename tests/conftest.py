"""Test set-up shared by every test module.

The import-order guard comes first: tensorflow_impl loads triton before
TensorFlow (loading it after crashes the process; docs/DEPENDENCIES.md, "Traps handled in code").
"""

import tensorflow_impl  # noqa: F401  (must stay the first import)
import pytorch_impl  # noqa: F401

import pytest
import torch


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
    from shared.data import load

    return load(tiny_spec)
