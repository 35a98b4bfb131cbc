"""Typer option types shared by ``veil train`` and ``veil sweep`` (same flag, same help)."""

from __future__ import annotations

from typing import Annotated

import typer

LrScheduleOption = Annotated[str, typer.Option(
    help="constant, cosine or linear (decay to 0 over each run's planned steps; same ε).")]
EmaDecayOption = Annotated[float, typer.Option(
    help="Release an EMA of the weights with this decay (0: the last step; same ε).")]
