"""DP-SGD noise and sampling against closed forms (scipy): N(0, (sigma C / (q N))^2) noise
per coordinate, Binomial(N, q) batch sizes."""

from __future__ import annotations

import warnings
from itertools import pairwise

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from veil.privacy.dpsgd import DPConfig, DPTrainer, add_lora, classification_loss

warnings.filterwarnings("ignore", message=".*")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_bert(seed: int = 0) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=200, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return add_lora(BertForSequenceClassification(cfg), r=4, alpha=8)


def batch(b: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(b)
    return {
        "input_ids": torch.randint(1, 200, (b, 10), generator=gen),
        "attention_mask": torch.ones(b, 10, dtype=torch.long),
        "labels": torch.randint(0, 3, (b,), generator=gen),
    }


def zero_loss(model: nn.Module, data: dict[str, torch.Tensor]) -> torch.Tensor:
    """Real forward/backward, but every per-example gradient is exactly zero."""
    return 0.0 * classification_loss()(model, data)


@pytest.mark.parametrize(
    ("mode", "secure"),
    [("lora-fast", False), ("lora-fast", True), ("hooks", False), ("ghost", False)],
)
def test_update_is_gaussian_with_std_sigma_c_over_expected_batch(mode: str, secure: bool) -> None:
    sigma, c, q, n = 1.3, 0.7, 0.2, 80  # expected batch q N = 16, actual batches of 5
    model = tiny_bert()
    params = [p for p in model.parameters() if p.requires_grad]
    cfg = DPConfig(noise_multiplier=sigma, max_grad_norm=c, sample_rate=q, dataset_size=n,
                   grad_sample_mode=mode, secure=secure, seed=None if secure else 4)  # type: ignore[arg-type]
    trainer = DPTrainer(model, torch.optim.SGD(params, lr=1.0), cfg, zero_loss)
    steps = []
    for _ in range(3):
        before = torch.cat([p.detach().flatten().clone() for p in params])
        trainer.step(batch(5))
        steps.append((before - torch.cat([p.detach().flatten() for p in params])).numpy())
    target = sigma * c / (q * n)
    x = np.concatenate(steps)
    assert x.size > 3000
    assert abs(x.std() / target - 1) < 0.10
    # exact checks: chi-square for the variance, z for the mean, KS for the shape
    chi2 = float((x**2).sum() / target**2)
    assert stats.chi2.sf(chi2, x.size) > 1e-3 and stats.chi2.cdf(chi2, x.size) > 1e-3
    assert abs(x.mean()) / (target / np.sqrt(x.size)) < 3.5
    assert stats.kstest(x, "norm", args=(0.0, target)).pvalue > 1e-3
    # fresh noise every step
    assert abs(np.corrcoef(steps[0], steps[1])[0, 1]) < 0.1


def test_poisson_batch_sizes_are_binomial() -> None:
    n, q, draws = 50, 0.1, 3000
    model = tiny_bert()
    cfg = DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=q, dataset_size=n, seed=9)
    trainer = DPTrainer(model, torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.1), cfg, classification_loss())
    data = [{"x": torch.tensor(i)} for i in range(n)]
    sizes = np.array([
        len(b["x"]) if isinstance(b, dict) else 0
        for b in trainer.make_loader(data, steps=draws)
    ])
    hits = np.zeros(n)
    # membership is uniform: each record is drawn with probability q
    for b in trainer.make_loader(data, steps=draws):
        if isinstance(b, dict):
            hits[b["x"].numpy()] += 1
    assert stats.chisquare(hits).pvalue > 1e-3
    assert abs(hits.sum() / (n * draws) - q) < 4 * np.sqrt(q * (1 - q) / (n * draws))
    edges = [0, 2, 3, 4, 5, 6, 7, 8, 10, n + 1]  # bins [lo, hi)
    observed = np.array([((sizes >= lo) & (sizes < hi)).sum() for lo, hi in pairwise(edges)])
    cdf = stats.binom.cdf(np.array(edges) - 1, n, q)
    expected = np.diff(cdf) * draws
    assert stats.chisquare(observed, expected).pvalue > 1e-3
