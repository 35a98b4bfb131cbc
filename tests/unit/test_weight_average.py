"""The EMA of the trainable weights: against the closed form, swapping and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from veil.train.averaging import WeightAverage


def closed_form(w0: np.ndarray, iterates: list[np.ndarray], decay: float) -> np.ndarray:
    """W_T = d^T W_0 + Σ_t (1 − d) d^(T−t) w_t (independent of torch's lerp)."""
    total = len(iterates)
    out = decay ** total * w0
    for t, w in enumerate(iterates, start=1):
        out = out + (1 - decay) * decay ** (total - t) * w
    return out


@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9])
def test_average_matches_the_closed_form(decay: float) -> None:
    rng = np.random.default_rng(0)
    p = nn.Parameter(torch.tensor(rng.normal(size=(3, 4)), dtype=torch.float64))
    w0 = p.detach().numpy().copy()
    avg = WeightAverage([p], decay)
    seen = []
    for _ in range(7):
        with torch.no_grad():
            p.add_(torch.tensor(rng.normal(size=(3, 4))))
        seen.append(p.detach().numpy().copy())
        avg.update()
    np.testing.assert_allclose(avg.average[0].numpy(), closed_form(w0, seen, decay), rtol=1e-12)
    if decay == 0.0:  # no memory: the average is the last iterate
        np.testing.assert_array_equal(avg.average[0].numpy(), seen[-1])


def test_swapped_in_restores_the_weights_and_copy_releases_the_average() -> None:
    p = nn.Parameter(torch.zeros(2))
    avg = WeightAverage([p], 0.5)
    with torch.no_grad():
        p.fill_(4.0)
    avg.update()  # average = 0.5·0 + 0.5·4 = 2
    with avg.swapped_in():
        assert p.detach().tolist() == [2.0, 2.0]
    assert p.detach().tolist() == [4.0, 4.0]
    avg.copy_to_model()
    assert p.detach().tolist() == [2.0, 2.0]


def test_state_round_trips_and_rejects_another_decay() -> None:
    p = nn.Parameter(torch.ones(3))
    avg = WeightAverage([p], 0.9)
    with torch.no_grad():
        p.mul_(3)
    avg.update()
    state = avg.state_dict()
    other = WeightAverage([nn.Parameter(torch.zeros(3))], 0.9)
    other.load_state_dict(state)
    assert other.updates == 1 and other.average[0].equal(avg.average[0])
    with pytest.raises(ValueError, match="does not match"):
        WeightAverage([nn.Parameter(torch.zeros(3))], 0.8).load_state_dict(state)


@pytest.mark.parametrize("decay", [-0.1, 1.0, float("nan")])
def test_decay_outside_0_1_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match="decay"):
        WeightAverage([nn.Parameter(torch.zeros(1))], decay)
