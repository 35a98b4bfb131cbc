"""DP voting: per-record L2 sensitivity, same-code restriction, selection and its guards."""

from __future__ import annotations

import math

import numpy as np
import pytest

from veil.synth.voting import nearest_votes, noisy_votes, select


def _unit(rng: np.random.Generator, n: int, d: int = 8) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_one_record_moves_the_histogram_by_exactly_one(k: int) -> None:
    rng = np.random.default_rng(k)
    cand = _unit(rng, 12)
    cand_codes = [0] * 7 + [1] * 5
    records = _unit(rng, 20)
    codes = list(rng.integers(0, 2, size=20))
    base = nearest_votes(records[:-1], codes[:-1], cand, cand_codes, k)
    full = nearest_votes(records, codes, cand, cand_codes, k)
    diff = full - base
    assert np.linalg.norm(diff) == pytest.approx(1.0, abs=1e-12)
    # exactly k entries of 1/sqrt(k), all on candidates of the record's own code
    nz = np.flatnonzero(diff)
    assert len(nz) == k
    assert np.allclose(diff[nz], 1 / math.sqrt(k))
    assert {cand_codes[i] for i in nz} == {codes[-1]}


def test_votes_go_to_the_nearest_same_code_candidates() -> None:
    cand = np.eye(4)
    cand_codes = [0, 0, 1, 1]
    record = np.array([[0.0, 0.0, 0.9, 0.1]])  # nearest overall: candidate 2 (code 1)
    record /= np.linalg.norm(record)
    v = nearest_votes(record, [0], cand, cand_codes, 1)  # but its code is 0
    assert v[2] == 0 and v[3] == 0 and v.sum() == pytest.approx(1.0)
    assert nearest_votes(record, [1], cand, cand_codes, 1)[2] == pytest.approx(1.0)


def test_fewer_candidates_than_k_keeps_sensitivity_below_one() -> None:
    rng = np.random.default_rng(0)
    cand = _unit(rng, 5)
    v = nearest_votes(_unit(rng, 1), [1], cand, [0, 0, 0, 1, 1], k=4)
    assert np.count_nonzero(v) == 2
    assert np.linalg.norm(v) == pytest.approx(math.sqrt(2 / 4))
    assert np.linalg.norm(v) < 1


def test_records_without_a_code_or_candidates_do_not_vote() -> None:
    rng = np.random.default_rng(1)
    v = nearest_votes(_unit(rng, 3), [None, 2, 2], _unit(rng, 4), [0, 0, 1, 1], k=2)
    assert not v.any()


def test_noisy_votes_add_gaussian_noise_and_sigma_zero_is_exact() -> None:
    rng = np.random.default_rng(2)
    votes = np.zeros(20000)
    noisy = noisy_votes(votes, 2.5, rng)
    assert noisy.std() == pytest.approx(2.5, rel=0.03)
    assert np.array_equal(noisy_votes(votes + 1, 0.0, rng), votes + 1)


def test_rank_selects_the_top_votes_per_code() -> None:
    votes = np.array([5.0, 1.0, 3.0, 0.5, 9.0, 2.0])
    codes = [0, 0, 0, 1, 1, 1]
    res = select(votes, codes, [2, 1], mode="rank", rng=np.random.default_rng(0))
    assert res.chosen == [0, 2, 4]
    assert res.zero_histogram_codes == []


def test_sampling_follows_the_votes_and_threshold_removes_small_ones() -> None:
    votes = np.array([10.0, 1.0, 0.0, -3.0])
    counts = np.zeros(4)
    rng = np.random.default_rng(3)
    for _ in range(2000):
        counts[select(votes, [0] * 4, [1], rng=rng).chosen[0]] += 1
    assert counts[2] == counts[3] == 0  # weight max(v, 0) = 0 is never sampled first
    assert counts[0] / 2000 == pytest.approx(10 / 11, abs=0.03)
    res = select(votes, [0] * 4, [1], threshold=2.0, rng=rng)
    assert res.chosen == [0] and res.positive_votes[0] == 1


def test_all_zero_histogram_falls_back_to_uniform_and_is_reported() -> None:
    votes = np.array([-1.0, -2.0, 0.0, 4.0])
    res = select(votes, [0, 0, 0, 1], [2, 1], threshold=0.0, rng=np.random.default_rng(4))
    assert res.zero_histogram_codes == [0]
    assert len([i for i in res.chosen if i < 3]) == 2 and 3 in res.chosen
    with pytest.raises(ValueError):
        select(votes, [0, 0, 0, 1], [1, 1], mode="top", rng=np.random.default_rng(0))
