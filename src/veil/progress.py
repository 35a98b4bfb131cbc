"""Rich progress bars that ``--quiet`` silences."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

_state = {"quiet": False}
console = Console(stderr=True)


def set_quiet(quiet: bool) -> None:
    """Silence (or re-enable) every progress bar and status line."""
    _state["quiet"] = quiet


def is_quiet() -> bool:
    """Whether progress output is silenced."""
    return _state["quiet"]


def make_progress() -> Progress:
    """A rich Progress with veil's columns, disabled under ``--quiet``."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=_state["quiet"],
        transient=False,
    )


def track(iterable: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar (none under ``--quiet``)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with make_progress() as progress:
        task = progress.add_task(description, total=total)
        for item in iterable:
            yield item
            progress.advance(task)


def info(message: str) -> None:
    """Print a status line to stderr unless quiet. Never pass raw input text here."""
    if not _state["quiet"]:
        console.print(message)
