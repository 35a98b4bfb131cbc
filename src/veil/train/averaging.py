"""Exponential moving average (EMA) of the trainable weights over optimizer steps.

Under DP-SGD every iterate is already a noisy release, so averaging them is
post-processing: the released average has exactly the ε of the last iterate
(same σ, steps, sampling). It damps the noise of the last steps without slowing
the learning rate (De et al. 2022, "Unlocking High-Accuracy Differentially
Private Image Classification through Scale", use it for the same reason).

The update is torch's :func:`torch.optim.swa_utils.get_ema_multi_avg_fn`:
``W_0 = initial weights``, ``W_t = decay · W_{t-1} + (1 − decay) · w_t`` after step t.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import get_ema_multi_avg_fn


class WeightAverage:
    """EMA of ``params`` (updated in place by the optimizer), kept beside them.

    Args:
        params: the trainable weights (the same tensors the optimizer updates).
        decay: weight of the previous average at each step, in [0, 1).
    """

    def __init__(self, params: Iterable[nn.Parameter], decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.params = list(params)
        self.decay = decay
        self.updates = 0
        with torch.no_grad():
            self.average = [p.detach().clone() for p in self.params]
        self._update = get_ema_multi_avg_fn(decay)

    def update(self) -> None:
        """Fold the current weights into the average (call after each optimizer step)."""
        self._update(self.average, [p.detach() for p in self.params], self.updates)
        self.updates += 1

    @torch.no_grad()
    def _swap(self) -> None:
        for p, a in zip(self.params, self.average, strict=True):
            tmp = p.detach().clone()
            p.copy_(a)
            a.copy_(tmp)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own after it."""
        self._swap()
        try:
            yield
        finally:
            self._swap()

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Replace the model's weights by the average (what the run releases)."""
        for p, a in zip(self.params, self.average, strict=True):
            p.copy_(a)

    def state_dict(self) -> dict[str, Any]:
        """The average and its step count, for checkpoints."""
        return {"decay": self.decay, "updates": self.updates,
                "average": [a.clone() for a in self.average]}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpointed average (same weights, same decay)."""
        saved: list[Tensor] = state["average"]
        if float(state["decay"]) != self.decay or len(saved) != len(self.average):
            raise ValueError("the checkpoint's weight average does not match this run")
        for a, s in zip(self.average, saved, strict=True):
            a.copy_(s)
        self.updates = int(state["updates"])
