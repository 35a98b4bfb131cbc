"""API contract of veil.privacy.mechanisms: validation, registry, seeding, shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from veil.privacy.mechanisms import (
    MECHANISMS,
    as_numpy_rng,
    exponential_mechanism,
    exponential_mechanism_nearest,
    gaussian,
    get_mechanism,
    laplace,
    sample_dchi,
    sample_vmf,
    vmf_mean_cosine,
)


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


MU = np.eye(4)[:3]


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), [1.0, -1.0]])
def test_gaussian_laplace_reject_bad_noise(bad: object) -> None:
    with pytest.raises(ValueError, match="sigma"):
        gaussian(np.zeros(2), bad, rng())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale"):
        laplace(np.zeros(2), bad, rng())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mu", "kappa", "match"),
    [
        (MU, -1.0, "kappa"),
        (MU, float("nan"), "kappa"),
        (MU, [1.0, 2.0], "kappa"),  # wrong length
        (np.zeros((2, 3)), 1.0, "zero row"),
        (np.ones((2, 1)), 1.0, "d >= 2"),
        (np.full((2, 3), np.nan), 1.0, "NaN"),
        (np.ones((2, 2, 2)), 1.0, "shape"),
    ],
)
def test_vmf_rejects_bad_input(mu: np.ndarray, kappa: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sample_vmf(mu, kappa, rng())  # type: ignore[arg-type]


def test_dchi_and_exponential_reject_bad_input() -> None:
    for eps in (0.0, -2.0, float("nan")):
        with pytest.raises(ValueError, match="epsilon"):
            sample_dchi(np.zeros((2, 3)), eps, rng())
    with pytest.raises(ValueError, match="epsilon"):
        exponential_mechanism(np.zeros(3), -1.0, 1.0, rng())
    with pytest.raises(ValueError, match="sensitivity"):
        exponential_mechanism(np.zeros(3), 1.0, 0.0, rng())
    with pytest.raises(ValueError, match="NaN"):
        exponential_mechanism(np.array([0.0, np.nan]), 1.0, 1.0, rng())
    with pytest.raises(ValueError, match="finite"):
        exponential_mechanism(np.full(3, -np.inf), 1.0, 1.0, rng())
    table = np.eye(3)
    with pytest.raises(ValueError, match="metric"):
        exponential_mechanism_nearest(np.zeros(3), table, 1.0, rng(), metric="manhattan")
    with pytest.raises(ValueError, match="chunk_size"):
        exponential_mechanism_nearest(np.zeros(3), table, 1.0, rng(), chunk_size=0)
    with pytest.raises(ValueError, match="table"):
        exponential_mechanism_nearest(np.zeros(2), table, 1.0, rng())
    with pytest.raises(ValueError, match="cosine"):
        exponential_mechanism_nearest(np.zeros(3), table, 1.0, rng(), metric="cosine")


def test_registry_and_aliases() -> None:
    for name in ("gaussian", "laplace", "vmf", "polar", "dchi", "exponential"):
        assert name in MECHANISMS
    assert get_mechanism("polar") is get_mechanism("vmf")
    assert get_mechanism(" VMF ").fn is sample_vmf
    assert get_mechanism("laplace").noise_param == "scale"
    out = get_mechanism("gaussian")(np.zeros(3), 1.0, rng())
    assert out.shape == (3,)
    with pytest.raises(ValueError, match=r"unknown mechanism .*valid: .*dchi.*polar"):
        get_mechanism("wavelet")


def _all_outputs(gen: object) -> list[np.ndarray]:
    return [
        gaussian(np.zeros(5), 1.0, gen),
        laplace(np.zeros(5), 1.0, gen),
        sample_vmf(MU, 3.0, gen),
        sample_dchi(MU, 3.0, gen),
        np.asarray(exponential_mechanism(np.zeros((4, 6)), 1.0, 1.0, gen)),
        exponential_mechanism_nearest(MU, np.eye(4), 1.0, gen, chunk_size=3),
    ]


def test_seeds_reproduce_and_differ() -> None:
    a = _all_outputs(np.random.default_rng(42))
    b = _all_outputs(np.random.default_rng(42))
    c = _all_outputs(np.random.default_rng(43))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a[:4], c[:4], strict=True))


def test_torch_generator_accepted_and_reproducible() -> None:
    a = _all_outputs(torch.Generator().manual_seed(7))
    b = _all_outputs(torch.Generator().manual_seed(7))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    gen = torch.Generator().manual_seed(7)
    first, second = as_numpy_rng(gen).random(), as_numpy_rng(gen).random()
    assert first != second  # the torch generator advances
    with pytest.raises(TypeError):
        as_numpy_rng(42)


def test_shapes_and_special_values() -> None:
    u = sample_vmf(np.array([3.0, 4.0]), 10.0, rng())  # unnormalised single vector
    assert u.shape == (2,)
    assert math.isclose(float(np.linalg.norm(u)), 1.0, rel_tol=1e-12)
    mu = np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    out = sample_vmf(mu, np.array([np.inf, 5.0]), rng())  # κ = ∞: released verbatim
    np.testing.assert_array_equal(out[0], mu[0])
    assert not np.array_equal(out[1], mu[1])
    np.testing.assert_array_equal(sample_vmf(mu, np.inf, rng()), mu)
    assert sample_dchi(np.zeros(3), 1.0, rng()).shape == (3,)
    j = exponential_mechanism(np.array([0.0, -np.inf, 1.0]), 2.0, 1.0, rng())
    assert isinstance(j, int) and j in (0, 2)
    idx = exponential_mechanism_nearest(np.zeros(3), np.eye(3), 1.0, rng())
    assert idx.shape == (1,) and idx.dtype == np.int64


def test_vmf_mean_cosine_limits() -> None:
    assert vmf_mean_cosine(384, 0.0) == 0.0
    assert vmf_mean_cosine(384, np.inf) == 1.0
    # Small κ: A_d(κ) ≈ κ/d; large κ: A_d(κ) ≈ 1 − (d−1)/(2κ). (Series limits, not the code.)
    assert math.isclose(vmf_mean_cosine(4096, 1e-3), 1e-3 / 4096, rel_tol=1e-6)
    assert math.isclose(vmf_mean_cosine(3, 1e5), 1 - 1 / 1e5, rel_tol=1e-9)  # exact: coth κ − 1/κ
    arr = vmf_mean_cosine(768, [0.0, 50.0, 1e4])
    assert isinstance(arr, np.ndarray) and arr.shape == (3,)
    assert np.all(np.diff(arr) > 0)
    with pytest.raises(ValueError):
        vmf_mean_cosine(1, 1.0)
    with pytest.raises(ValueError):
        vmf_mean_cosine(3, -1.0)


@pytest.mark.parametrize(
    ("d", "kappa"),
    [(2, 0.5), (3, 7.0), (384, 50.0), (768, 1e-3), (4096, 1.0), (4096, 1e5), (20000, 2.0)],
)
def test_vmf_mean_cosine_matches_mpmath(d: int, kappa: float) -> None:
    """Including the regime where scipy's ive underflows (large d, small κ)."""
    import mpmath

    with mpmath.workdps(40):
        nu = mpmath.mpf(d) / 2
        ref = float(mpmath.besseli(nu, kappa) / mpmath.besseli(nu - 1, kappa))
    assert math.isclose(vmf_mean_cosine(d, kappa), ref, rel_tol=1e-10)
