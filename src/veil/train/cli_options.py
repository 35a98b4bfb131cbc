"""Typer option types shared by ``veil train`` and ``veil sweep`` (same flag, same help)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

LrScheduleOption = Annotated[str, typer.Option(
    help="constant, cosine or linear (decay to 0 over each run's planned steps; same ε).")]
EmaDecayOption = Annotated[float, typer.Option(
    help="Release an EMA of the weights with this decay (0: the last step; same ε).")]
HeadInitOption = Annotated[str, typer.Option(
    help="random, or labels: start the head at the zero-shot score of label descriptions "
         "(public; no ε spent).")]
HeadInitScaleOption = Annotated[float, typer.Option(
    help="Scale s of the labels head initialisation (logit = s × centred correlation).")]
LoraFreezeAOption = Annotated[bool, typer.Option(
    help="FFA-LoRA: keep LoRA's A at its seeded random start; train B and the head "
         "(half the noised LoRA weights; same ε).")]
LabelDescriptionsOption = Annotated[Path | None, typer.Option(
    help="JSON {label: text or [texts]}: public descriptions for --head-init labels and "
         "--adapter evidence (default: templates around the label name).")]
