"""Stage ``studies``: the task's own studies (its plug-in's, compare/tasks/<task>.py), each recorded as
failed on its own if it breaks."""

from __future__ import annotations

from ..studies import StudyContext, studies_for
from . import RunContext
from .train import Initialisation


def studies(ctx: RunContext, data, models: dict, init: Initialisation) -> None:
    """``studies``: what each study returns, with its name and seed answers."""
    context = StudyContext(ctx.spec, data, ctx.twins, models, ctx.cache, ctx.progress.printer,
                           lambda framework, spec=None: init.model(framework, spec or ctx.spec), ctx.profile,
                           ctx.preset)
    for study in studies_for(ctx.task, ctx.variant):
        ctx.step("study", f"study: {study.name}")
        try:
            found = study.run(context)
            ctx.result["parity"].extend(found.pop("parity", []))  # gated by `twinvision check` like the task's
            ctx.result.setdefault("studies", []).append({**found, "name": study.name,
                                                         "seed_answers": list(study.seed_answers)})
        except Exception as err:  # noqa: BLE001
            ctx.fail(f"study {study.name}", err)


__all__ = ["studies"]
