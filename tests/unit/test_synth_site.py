"""Site side: spend before release, local refusals, node config, message round trip."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from veil.errors import BadInput, BudgetRefused
from veil.privacy.ledger import Ledger
from veil.synth.budget import composed_epsilon, plan_for_role
from veil.synth.config import SynthConfig
from veil.synth.site import SiteFailure, SiteSpec, load_site_data, site_profile
from veil.synth.transport import read_server_content, server_content, short_reason, site_content
from veil.synth.voting import nearest_votes, vote_histogram

CFG = SynthConfig(code_cols=("label",), codes=(("a",), ("b",), ("c",)), epsilon=6.0,
                  delta=1e-3)


def _site(tmp_path: Path, labels: list[str]) -> Path:
    path = tmp_path / "site_7.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i, lab in enumerate(labels):
            w.writerow([f"record number {i} of the site", lab])
    return path


def test_profile_spends_the_recomputed_epsilon_before_releasing(tmp_path: Path) -> None:
    path = _site(tmp_path, ["a"] * 5 + ["b"] * 3 + ["zzz"])
    ledger = tmp_path / "ledger.db"
    spec = SiteSpec("site_7", str(path), "weak", ledger=str(ledger))
    plan = plan_for_role(CFG, "weak")
    noisy = site_profile(spec, CFG, plan, "run1")
    assert noisy.shape == (3,) and not np.allclose(noisy, [5, 3, 0])
    data = load_site_data(spec, CFG)
    assert data.code_index.count(None) == 1  # "zzz" is outside the vocabulary
    (spend,) = Ledger(ledger).spends(data.fingerprint)
    assert spend.epsilon == pytest.approx(composed_epsilon(plan.parts(), plan.delta)[0])
    assert spend.status == "spent"  # the vote is still to come
    only = plan_for_role(replace(CFG, refine=False), "weak")
    site_profile(spec, CFG, only, "run2")
    assert [s.status for s in Ledger(ledger).spends(data.fingerprint)] == ["spent", "released"]


def test_site_refusals_release_nothing(tmp_path: Path) -> None:
    path = _site(tmp_path, ["a", "b"] * 20)
    ledger = tmp_path / "ledger.db"
    plan = plan_for_role(CFG, "weak")
    capped = SiteSpec("site_7", str(path), "weak", ledger=str(ledger), max_epsilon=2.0)
    with pytest.raises(SiteFailure, match="max-epsilon"):
        site_profile(capped, CFG, plan, "r")
    fp = load_site_data(capped, CFG).fingerprint
    assert Ledger(ledger).spends(fp) == []
    Ledger(ledger).set_budget(fp, 3.0)
    with pytest.raises(BudgetRefused):
        site_profile(SiteSpec("site_7", str(path), "weak", ledger=str(ledger)), CFG, plan, "r")
    with pytest.raises(SiteFailure, match="fail-at"):
        site_profile(SiteSpec("s", str(path), "weak", ledger=str(ledger), fail_at="profile"),
                     CFG, plan, "r")
    tiny = _site(tmp_path, ["a"] * 3)
    with pytest.raises(SiteFailure, match="1/N"):
        site_profile(SiteSpec("t", str(tiny), "weak", ledger=str(ledger)),
                     replace(CFG, delta=0.5),
                     plan_for_role(replace(CFG, delta=0.5), "weak"), "r")
    assert Ledger(ledger).spends(fp) == []


def test_node_config_parsing() -> None:
    spec = SiteSpec.from_node_config({"data-path": "/d/site_3.csv", "role": "strong",
                                      "max-epsilon": 4, "fail-at": "vote"})
    assert (spec.name, spec.role, spec.max_epsilon, spec.fail_at) == ("site_3", "strong", 4.0,
                                                                      "vote")
    with pytest.raises(BadInput):
        SiteSpec.from_node_config({"role": "weak"})
    with pytest.raises(BadInput):
        SiteSpec.from_node_config({"data-path": "x.csv", "role": "boss"})


def test_messages_round_trip_through_flower_records() -> None:
    plan = plan_for_role(CFG, "weak")
    adapter = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    content = server_content(CFG, plan, "tag", round_=2, steps=5, adapter=adapter,
                             candidates=(["x", "y"], [0, 2]))
    inc = read_server_content(content)
    assert inc.cfg == CFG and inc.plan == plan and inc.round_ == 2 and inc.steps == 5
    assert np.array_equal(inc.adapter["w"], adapter["w"])  # type: ignore[index]
    assert inc.texts == ["x", "y"] and inc.codes == [0, 2]
    reply = site_content(values=np.array([0.5, 1.5]), key="noisy-votes")
    assert list(reply["release"]["noisy-votes"]) == [0.5, 1.5]
    assert short_reason("Traceback ...\\nException X occurred. Message: site s failed'>") == (
        "site s failed")


class _FakeEncoder:
    def encode(self, texts: list[str], **_: object) -> np.ndarray:
        emb = np.array([[len(t), t.count("a") + 1.0] for t in texts], dtype=float)
        return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def test_vote_histogram_embeds_once_and_skips_unknown_codes() -> None:
    enc = _FakeEncoder()
    records, codes = ["aaa", "b", "aab"], [0, None, 1]
    cands, ccodes = ["a", "aaaa", "bb", "ab"], [0, 0, 1, 1]
    hist = vote_histogram(enc, records, codes, cands, ccodes, k=1)
    emb_r = enc.encode(["aaa", "aab"])
    emb_c = enc.encode(cands)
    assert np.array_equal(hist, nearest_votes(emb_r, [0, 1], emb_c, ccodes, 1))
    assert hist.sum() == pytest.approx(2.0)


class _CountingEncoder(_FakeEncoder):
    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def encode(self, texts: list[str], **kw: object) -> np.ndarray:
        self.seen.append(list(texts))
        return super().encode(texts, **kw)


def test_vote_histogram_with_precomputed_candidates_equals_one_pass() -> None:
    enc = _CountingEncoder()
    records, codes = ["aaa", "b", "aab", "ba"], [0, None, 1, 1]
    cands, ccodes = ["a", "aaaa", "bb", "ab", "aba"], [0, 0, 1, 1, 1]
    one_pass = vote_histogram(enc, records, codes, cands, ccodes, k=2)
    enc.seen.clear()
    given = vote_histogram(enc, records, codes, cands, ccodes, k=2,
                           cand_emb=_FakeEncoder().encode(cands))
    assert np.array_equal(given, one_pass)
    assert enc.seen == [["aaa", "aab", "ba"]]          # only the site's own voters
    with pytest.raises(ValueError, match="one row per candidate"):
        vote_histogram(enc, records, codes, cands, ccodes, k=1,
                       cand_emb=_FakeEncoder().encode(cands[:2]))


def test_candidates_are_embedded_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from veil.synth import site

    enc = _CountingEncoder()
    monkeypatch.setattr(site, "_encoder", lambda name: enc)
    site._candidate_embeddings.cache_clear()
    try:
        first = site._candidate_embeddings("fake", ("a", "bb"), 8)
        again = site._candidate_embeddings("fake", ("a", "bb"), 8)
        other = site._candidate_embeddings("fake", ("a", "bc"), 8)
    finally:
        site._candidate_embeddings.cache_clear()
    assert again is first and enc.seen == [["a", "bb"], ["a", "bc"]]
    assert np.array_equal(other[0], first[0])
    assert not first.flags.writeable
