"""The tools that prove the runtime: benchmarks, fault scenarios, the main job's demo and the
decision tap they share.

Not shipped in the runtime image. Tools use ``services`` and ``models``; nothing in
``services`` imports them, except that ``fraud`` asks :func:`register` for their subcommands
where this package is installed. Each tool package adds its own subcommands and imports its
modules only when one runs, so that ``fraud --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.cli import AddCommand
    from services.common.settings import Settings


def register(add: AddCommand) -> None:
    """Add every tool's subcommands to ``fraud`` (called by :func:`services.cli.build_parser`)."""
    from tools import bench, chaos, demo

    for tool in (bench, chaos, demo):
        tool.register(add)


def exit_on_sigterm() -> None:
    """Make SIGTERM end this process as SIGINT does, through ``finally`` blocks: a tool's
    cleanup (stopping the workers it started) runs when it is stopped by ``timeout``, CI or
    ``kill``, instead of leaving them running (a killed ``fraud chaos`` left its scorer
    writing into the next run's Redis database, 2026-12-03). Exits with status 143."""
    import signal

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def ensure_model(settings: Settings, log: Callable[..., None], progress: bool) -> None:
    """Train and activate a model with the quick grid when none is active."""
    from models.registry import ModelRegistry

    if ModelRegistry(settings.models_dir).active() is None:
        from models.train import run_training

        log("no active model: training one with the quick grid")
        run_training(settings, quick=True, progress=progress)
