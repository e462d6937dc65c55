"""Parity levels L1-L5 of every runnable model in the registry, with each spec's tolerances (tests/parity_mixin.py)."""

from .parity_mixin import TwinParityMixin


class TestParity(TwinParityMixin):
    pass
