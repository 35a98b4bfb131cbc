"""veil synth: resource-adaptive federated DP synthetic text on Flower.

Strong sites DP-fine-tune a generator (LoRA + DP-SGD), every site releases a
noisy per-code profile, the server generates per-code candidates and weak
sites refine them with DP nearest-neighbour votes. ε is per record at each
site. Entry point: :func:`veil.synth.facade.synthesize` (also ``veil synth``).
Nothing heavy is imported here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["synthesize"]


def __getattr__(name: str) -> Any:
    if name == "synthesize":
        from veil.synth.facade import synthesize

        return synthesize
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
