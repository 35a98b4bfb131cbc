"""Core commands shared by every pipeline: ``demo``, ``models``, ``ledger``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the core commands to ``app``."""
    del app
