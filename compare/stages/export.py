"""Stage ``export``: every artifact of the reference weights (compare.exports), cached."""

from __future__ import annotations

from pathlib import Path

from ..exports import export_all
from . import RunContext


def export(ctx: RunContext, reference: dict) -> dict[str, Path]:
    """``{artifact: path}``; records ``exports`` (one row per artifact) and ``size``. A model that does not
    export whole (``spec.export_limit``) exports its twins' export view as its graphs."""
    ctx.step("export", "export artifacts")
    exported = export_all(ctx.twins, reference, ctx.spec, ctx.cache)
    ctx.result["exports"].extend(exported.rows)
    ctx.result["size"].extend(exported.sizes)
    ctx.result["errors"].extend(exported.errors)
    ctx.result.setdefault("tracebacks", []).extend(exported.tracebacks)
    return exported.paths


__all__ = ["export"]
