"""STAMP privatizer: grouping, ε = ∞ / 0, decoding, piece kinds, mechanisms, uniform matching."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chisquare

from veil.errors import BadInput
from veil.privatize import groups as grp
from veil.privatize.baselines import TOKEN_MECHANISMS, get_token_mechanism
from veil.privatize.config import PrivatizeConfig, parse_budgets, parse_group_eps
from veil.privatize.decode import NearestDecoder
from veil.privatize.polar import ReleaseOptions, polar_release
from veil.privatize.stamp import Privatizer
from veil.privatize.vocab import CONTINUATION, INITIAL, Vocabulary, load_vocabulary

TEXT = "Patient John Smithson has a small lung fluid collection.\nSeen by XXXX today."
TASK = "lung fluid"


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return load_vocabulary("minilm")


def fake_detector(texts: list[str]) -> list[list[dict[str, object]]]:
    """Flags 'John Smith' (part of a word, to test word extension) and XXXX as MASK."""
    out = []
    for t in texts:
        spans: list[dict[str, object]] = []
        i = t.find("John Smith")
        if i >= 0:
            spans.append({"start": i, "end": i + len("John Smith"), "entity_type": "PERSON"})
        j = t.find("XXXX")
        if j >= 0:
            spans.append({"start": j, "end": j + 4, "entity_type": "MASK"})
        out.append(spans)
    return out


def _task_scores(vocab: Vocabulary, ids: np.ndarray, task: str) -> np.ndarray:
    """Independent recomputation of cos(ē(w), normalize(mean E[task tokens]))."""
    tok = vocab.tokenizer(task, add_special_tokens=False)["input_ids"]
    q = vocab.table[tok].astype(np.float64).mean(axis=0)
    q /= np.linalg.norm(q)
    rows = vocab.table[ids].astype(np.float64)
    return (rows @ q) / np.linalg.norm(rows, axis=1)


def test_groups_on_crafted_example(vocab: Vocabulary) -> None:
    enc = vocab.encode([TEXT])[0]
    pieces = vocab.tokenizer.convert_ids_to_tokens(enc.ids.tolist())
    assert pieces[1:4] == ["john", "smith", "##son"]
    scores = _task_scores(vocab, enc.ids, TASK)
    tau = 0.5 * (scores[pieces.index("lung")] + np.median(scores))
    p = Privatizer(PrivatizeConfig(task=TASK, tau=float(tau)), detector=fake_detector,
                   vocab=vocab)
    tr = p.privatize([TEXT]).traces[0]
    for t, piece in enumerate(pieces):
        s = enc.offsets[t][0]
        if TEXT.index("XXXX") <= s < TEXT.index("XXXX") + 4:  # "xx", "##xx"
            assert tr.groups[t] == grp.KEPT_MASK and tr.keep[t]
            continue
        # every piece of the word touched by the span is sensitive, incl. "##son"
        sensitive = piece in ("john", "smith", "##son")
        if sensitive:
            ent = [pieces.index(x) for x in ("john", "smith", "##son")]
            important = all(scores[k] >= tau for k in ent)  # one entity = one group
        else:
            important = scores[t] >= tau
        expected = (grp.G1 if important else grp.G2) if sensitive else (
            grp.G3 if important else grp.G4)
        assert tr.groups[t] == expected, piece
    assert {tr.groups[pieces.index(x)] for x in ("john", "smith", "##son")} == {grp.G2}
    assert tr.groups[pieces.index("lung")] == grp.G3
    assert tr.groups[pieces.index("patient")] == grp.G4


def test_sensitivity_spans_to_every_piece() -> None:
    offsets = np.array([[0, 4], [5, 10], [10, 13], [14, 17], [18, 22]])
    kinds = np.array([INITIAL, INITIAL, CONTINUATION, INITIAL, INITIAL], dtype=np.int8)
    links = grp.word_links(offsets, kinds)
    assert links.tolist() == [False, False, True, False, False]
    sens, kept, ent = grp.sensitivity(offsets, links, [{"start": 6, "end": 8, "type": "PERSON"},
                                                       {"start": 18, "end": 22, "type": "MASK"}])
    assert sens.tolist() == [False, True, True, False, False]
    assert kept.tolist() == [False, False, False, False, True]
    assert ent[1] == ent[2] >= 0 and ent[0] == -1
    groups = grp.assign_groups(sens, ent, np.array([0.9, 0.9, 0.1, 0.9, 0.0]), 0.5, kept)
    assert groups.tolist() == [grp.G3, grp.G2, grp.G2, grp.G3, grp.KEPT_MASK]


def test_eps_inf_verbatim_and_zero_masked(vocab: Vocabulary) -> None:
    cfg = PrivatizeConfig(task=TASK, group_eps=(math.inf, 0.0, math.inf, math.inf))
    res = Privatizer(cfg, detector=fake_detector, vocab=vocab).privatize([TEXT, "", "  "])
    assert res.texts[0] == TEXT.replace("John Smithson", "[MASK] [MASK][MASK]")
    assert res.texts[1:] == ["", "  "]
    rep = res.reports[0]
    assert rep.n_masked_zero == 3 and rep.n_verbatim_inf == rep.n_private - 3
    assert rep.eps_mean_all == math.inf and rep.eps_mean_finite == 0.0
    assert res.reports[1].empty and res.reports[2].n_tokens == 0


def test_huge_kappa_is_identity_and_layout_kept(vocab: Vocabulary) -> None:
    rng = np.random.default_rng(0)
    ok = np.flatnonzero(vocab.kinds >= 0)
    _, first = np.unique(vocab.unit[ok], axis=0, return_index=True)
    ids = rng.choice(ok[np.sort(first)], 2000, replace=False)
    out = polar_release(vocab, ids, vocab.input_kinds(ids), np.full(ids.size, 1e9), rng)
    assert np.array_equal(out, ids)
    text = "MILD   cardiomegaly;\n\n\tno  effusion."
    res = Privatizer(PrivatizeConfig(task=TASK, epsilon=1e9), detector=lambda t: [[]] * len(t),
                     vocab=vocab).privatize([text])
    assert res.texts[0] == text.lower()


def test_kappa_zero_is_uniform_on_symmetric_vocab() -> None:
    d = 4
    table = np.concatenate([np.eye(d), -np.eye(d)]).astype(np.float32)
    voc = Vocabulary("toy", table, np.zeros(2 * d, np.int8), [f"t{i}" for i in range(2 * d)])
    rng = np.random.default_rng(1)
    n = 16_000
    for a in (0, 5):
        out = polar_release(voc, np.full(n, a), np.zeros(n, np.int8), np.zeros(n), rng)
        counts = np.bincount(out, minlength=2 * d)
        assert chisquare(counts).pvalue > 1e-4  # uniform over the 8 (equal-area) cells
    near = polar_release(voc, np.full(n, 0), np.zeros(n, np.int8), np.full(n, 50.0), rng)
    assert np.mean(near == 0) > 0.99


def test_piece_kinds_honoured(vocab: Vocabulary) -> None:
    rng = np.random.default_rng(2)
    init = rng.choice(vocab.candidates(INITIAL), 400)
    cont = rng.choice(vocab.candidates(CONTINUATION), 400)
    ids = np.concatenate([init, cont])
    kinds = vocab.input_kinds(ids)
    for name in TOKEN_MECHANISMS:
        out = get_token_mechanism(name).release(vocab, ids, kinds, np.full(ids.size, 1.0), rng,
                                                ReleaseOptions())
        assert np.array_equal(vocab.kinds[out], kinds), name
    anyk = polar_release(vocab, ids, kinds, np.full(ids.size, 1.0), rng,
                         ReleaseOptions(decode_any=True))
    assert (vocab.kinds[anyk] >= 0).all()
    assert (vocab.kinds[anyk[400:]] == INITIAL).any()  # continuation inputs may now go anywhere
    assert not any(vocab.surfaces[i].startswith("[unused") for i in anyk)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_decode_equals_brute_force(vocab: Vocabulary, metric: str) -> None:
    rng = np.random.default_rng(3)
    q = rng.standard_normal((300, vocab.dim)) * 0.05
    kinds = (rng.random(300) < 0.3).astype(np.int8)
    got = NearestDecoder(vocab, metric, chunk_rows=64).decode(q, kinds)  # type: ignore[arg-type]
    src = vocab.unit if metric == "cosine" else vocab.table
    s = q @ src.astype(np.float64).T
    if metric == "euclidean":
        s -= 0.5 * (src.astype(np.float64) ** 2).sum(axis=1)
    allowed = np.stack([vocab.kinds == INITIAL, vocab.kinds == CONTINUATION])[kinds]
    s[~allowed] = -np.inf
    best = s.argmax(axis=1)
    rows = np.arange(300)
    assert allowed[rows, got].all()
    gap = s[rows, best] - s[rows, got]
    assert (gap <= 1e-5 * np.abs(s[rows, best]).clip(1)).all()
    assert np.mean(got == best) > 0.99


def test_uniform_matches_stamp_average(vocab: Vocabulary) -> None:
    docs = [TEXT, "No acute findings. John Smithson again.", "Stable pleural effusion."]
    stamp = Privatizer(PrivatizeConfig(task=TASK, tau=0.2), detector=fake_detector,
                       vocab=vocab).privatize(docs)
    stamp_eps = np.concatenate([tr.eps[tr.groups < 4] for tr in stamp.traces])
    assert len(set(stamp_eps.tolist())) > 1  # several groups present
    uni = Privatizer(PrivatizeConfig(task=TASK, tau=0.2, uniform=True), detector=fake_detector,
                     vocab=vocab).privatize(docs)
    uni_eps = np.concatenate([tr.eps[tr.groups < 4] for tr in uni.traces])
    assert uni.uniform_eps == pytest.approx(stamp_eps.mean())
    assert np.allclose(uni_eps, stamp_eps.mean())
    per_doc = Privatizer(PrivatizeConfig(task=TASK, tau=0.2, uniform=True,
                                         uniform_scope="document"),
                         detector=fake_detector, vocab=vocab).privatize(docs)
    for s_tr, u_tr, rep in zip(stamp.traces, per_doc.traces, per_doc.reports, strict=True):
        assert rep.eps_mean_finite == pytest.approx(s_tr.eps[s_tr.groups < 4].mean())
        assert np.allclose(u_tr.eps[u_tr.groups < 4], rep.uniform_eps)


def test_reports_and_long_document(vocab: Vocabulary) -> None:
    long = ("Mild effusion." + " " * 40) * 1100 + "\nEnd."  # > 50,000 characters: windowed
    enc = vocab.encode([long])[0]
    direct = vocab.tokenizer(long, add_special_tokens=False, verbose=False)["input_ids"]
    assert enc.ids.tolist() == direct
    res = Privatizer(PrivatizeConfig(task=TASK, epsilon=50), detector=lambda t: [[]] * len(t),
                     vocab=vocab).privatize([long])
    rep = res.reports[0]
    assert rep.n_tokens == len(direct) and res.texts[0].endswith("\nend.")
    assert rep.n_changed == int((res.traces[0].out_ids != res.traces[0].ids).sum()) > 0
    g = res.traces[0].groups
    assert rep.eps_sum == pytest.approx(sum(PrivatizeConfig(epsilon=50).group_epsilons()[k]
                                            for k in g))
    assert rep.eps_d_sum > 0


def test_config_and_option_validation() -> None:
    assert parse_budgets("2:1:4:3") == (2, 1, 4, 3)
    assert parse_group_eps("1,0,inf,3")[2] == math.inf
    assert PrivatizeConfig(epsilon=10).group_epsilons() == (20, 10, 40, 30)
    assert PrivatizeConfig(epsilon=10, budgets=(0, 1, math.inf, 1)).group_epsilons() == (
        0, 10, math.inf, 10)
    for bad in ("1,2,3", "a,b,c,d", "1,-2,3,4"):
        with pytest.raises(BadInput):
            parse_group_eps(bad)
    for kwargs in ({"epsilon": 0}, {"epsilon": -1}, {"epsilon": math.inf}, {"tau": 1.5},
                   {"mechanism": "gauss"}, {"uniform": True, "group_eps": (0, 0, math.inf, 0)}):
        with pytest.raises(BadInput):
            PrivatizeConfig.checked(**kwargs)
    with pytest.raises(BadInput):
        Privatizer(PrivatizeConfig(), detector=lambda t: [[]] * len(t),
                   vocab=Vocabulary("toy", np.eye(3, dtype=np.float32),
                                    np.zeros(3, np.int8), ["a", "b", "c"])).privatize(["x"])


def test_byte_level_vocabulary_keeps_layout() -> None:
    """SmolLM2's byte-level BPE (via the tiny-llama test model): space-prefixed pieces are
    word-initial, whitespace pieces are layout, and huge ε round-trips the text."""
    voc = load_vocabulary("tiny-llama")
    assert voc.kinds[voc.tokenizer.convert_tokens_to_ids("ĠJohn")] == INITIAL
    assert voc.kinds[voc.tokenizer.convert_tokens_to_ids("son")] == CONTINUATION
    text = "Patient  John Smithson,\n\nMRN 12345 opacity."
    res = Privatizer(PrivatizeConfig(task="lung", epsilon=1e9, embeddings="tiny-llama"),
                     detector=lambda t: [[]] * len(t), vocab=voc).privatize([text])
    assert res.texts[0] == text
    assert (res.traces[0].groups == grp.LAYOUT).sum() >= 3  # "Ġ", "Ċ", "Ċ"
