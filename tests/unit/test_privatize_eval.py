"""privatize-eval harness: metrics against hand-computed values on tiny inputs, matched-ε
uniform runs, answer survival at ε = ∞ / ε = 0, the empirical LDP checker (with a negative
control), grids and data loaders."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from veil.errors import BadInput
from veil.privatize import eval_privacy as ep
from veil.privatize import eval_tasks as et
from veil.privatize.eval_corpora import Corpus
from veil.privatize.evaluate import EvalOptions, parse_grid, parse_seeds, privatize_run
from veil.privatize.polar import ReleaseOptions, polar_release
from veil.privatize.stats import TokenTrace
from veil.privatize.vocab import CONTINUATION, EXCLUDED, INITIAL, Vocabulary


def _trace(offsets: list[tuple[int, int]], ids: list[int], out: list[int],
           groups: list[int]) -> TokenTrace:
    n = len(ids)
    return TokenTrace(np.array(offsets, np.int64).reshape(n, 2), np.array(ids, np.int64),
                      np.array(out, np.int64), np.array(groups, np.int8), np.full(n, 1.0),
                      np.zeros(n, bool))


# "aa bb cc dd" : tokens at 0-2, 3-5, 6-8, 9-11
T1 = _trace([(0, 2), (3, 5), (6, 8), (9, 11)], [5, 6, 7, 8], [5, 9, 7, -1], [3, 1, 2, 0])
# second doc: one private token unchanged, one layout token (not private)
T2 = _trace([(0, 3), (4, 5)], [10, 11], [10, 11], [3, 5])


def test_tokens_unchanged_by_hand() -> None:
    # private: T1 all 4 (unchanged: 5, 7), T2 one (unchanged) -> 3 of 5
    assert ep.tokens_unchanged([T1, T2]) == (3, 5)


def test_span_and_answer_survival_by_hand() -> None:
    spans = [[(0, 2), (3, 8), (6, 8), (9, 11), (2, 3)], [(0, 5)]]
    # (0,2) kept; (3,8) covers a changed token; (6,8) kept; (9,11) masked; (2,3) no token
    assert ep.span_survival([T1, T2], spans) == (3, 5)
    # doc1: alternatives (3,5) changed, (0,2) kept -> survives; doc2: only (4,5) (layout, kept)
    assert ep.answer_survival([T1, T2], [[(3, 5), (0, 2)], [(4, 5)]]) == (2, 2)
    assert ep.answer_survival([T1, T2], [[(3, 5)], [(6, 6)]]) == (0, 1)


def test_accuracy_and_cosines_by_hand() -> None:
    assert et.accuracy([0, 1, 2, 3], [0, 1, 2, 0]) == 0.75
    cos = et.row_cosines([[1, 0], [1, 1], [0, 0]], [[0, 2], [2, 2], [1, 0]])
    np.testing.assert_allclose(cos, [0.0, 1.0, 0.0])
    with pytest.raises(ValueError):
        et.accuracy([], [])


def test_classifier_learns_and_split_is_seeded() -> None:
    train, test = et.half_split(11, seed=3)
    assert len(train) == 5 and len(test) == 6 and set(train) | set(test) == set(range(11))
    assert np.array_equal(et.half_split(11, seed=3)[0], train)
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    clf = et.fit_classifier(x, [0, 0, 1, 1])
    assert et.accuracy(clf.predict(np.array([[0.8, 0.2], [0.2, 0.8]])), [0, 1]) == 1.0


class _HashEncoder:
    """A deterministic fake sentence encoder that counts its inputs."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: list[str], **_: object) -> np.ndarray:
        self.seen += texts
        return np.array([[len(t), sum(map(ord, t.lower())) % 97 + 1.0] for t in texts])


def test_embedder_reuses_originals_case_folded() -> None:
    enc = _HashEncoder()
    emb = et.TextEmbedder(encoder=enc)
    orig = emb.originals(["Alpha beta", "Gamma"])
    assert enc.seen == ["Alpha beta", "Gamma"]
    again = emb(["alpha beta", "new [MASK] text", "new [MASK] text"])
    assert enc.seen[2:] == ["new [MASK] text"]  # one new text, encoded as written
    np.testing.assert_allclose(again[0], orig[0])


@pytest.fixture(scope="module")
def small_vocab() -> Vocabulary:
    """minilm's real tokenizer with a random 16-d table (fast; decoding is cheap)."""
    from veil.models import load_tokenizer

    tok = load_tokenizer("minilm")
    pieces = tok.convert_ids_to_tokens(list(range(len(tok))))
    special = set(tok.all_special_ids)
    kinds = np.array([EXCLUDED if i in special or p.startswith("[unused") else
                      CONTINUATION if p.startswith("##") else INITIAL
                      for i, p in enumerate(pieces)], np.int8)
    surfaces = [p[2:] if p.startswith("##") else p for p in pieces]
    table = np.random.default_rng(0).standard_normal((len(pieces), 16)).astype(np.float32)
    return Vocabulary("test16", table, kinds, surfaces, tokenizer=tok)


def _corpus(texts: list[str], spans: list[list[dict[str, object]]],
            answers: list[list[tuple[int, int]]]) -> Corpus:
    def score(result):  # type: ignore[no-untyped-def]
        kept, n = ep.answer_survival(result.traces, answers)
        return {"answer_survival": kept / n}

    return Corpus("tiny", texts, ["lorem ipsum dolor"] * len(texts), spans, score)


def test_matched_uniform_eps_equals_stamp_by_hand(small_vocab: Vocabulary,
                                                  tmp_path: Path) -> None:
    texts = ["alpha beta gamma", "delta epsilon"]
    spans: list[list[dict[str, object]]] = [[{"start": 6, "end": 10, "entity_type": "PERSON"}],
                                            []]
    corpus = _corpus(texts, spans, [[(0, 5)], [(0, 5)]])
    setting = parse_grid("20")[1][0]  # G1..G4 = 40, 20, 80, 60
    opts = EvalOptions(out=tmp_path, tau=1.0)  # τ = 1: no token is important
    eps_stamp, m_stamp = privatize_run(corpus, setting, "polar", "stamp", 0, opts, small_vocab)
    eps_unif, m_unif = privatize_run(corpus, setting, "polar", "uniform", 0, opts, small_vocab)
    # one sensitive token (beta, G2 = 20) and four others (G4 = 60), each a single piece
    expected = (20 + 4 * 60) / 5
    assert eps_stamp == pytest.approx(expected)
    assert eps_unif == pytest.approx(expected)
    assert m_stamp["share_G2"] == pytest.approx(1 / 5) and m_stamp["share_G4"] == 0.8
    assert m_unif["private_tokens"] == m_stamp["private_tokens"] == 5


def test_answer_survival_is_one_at_inf_and_zero_at_masking(small_vocab: Vocabulary,
                                                          tmp_path: Path) -> None:
    texts = ["the quick brown fox jumps", "over the lazy dog today"]
    corpus = _corpus(texts, [[], []], [[(4, 9)], [(9, 13), (14, 17)]])
    opts = EvalOptions(out=tmp_path)
    inf = parse_grid("1")[1][0].__class__("inf", (math.inf,) * 4)
    zero = inf.__class__("zero", (0.0,) * 4)
    _, m_inf = privatize_run(corpus, inf, "polar", "stamp", 0, opts, small_vocab)
    _, m_zero = privatize_run(corpus, zero, "laplace", "stamp", 0, opts, small_vocab)
    assert m_inf["answer_survival"] == 1.0 and m_inf["tokens_unchanged"] == 1.0
    assert m_zero["answer_survival"] == 0.0 and m_zero["tokens_unchanged"] == 0.0


def test_ldp_checker_passes_honest_and_flags_under_noised() -> None:
    vocab = ep.toy_vocabulary(size=12, dim=6, seed=3)
    eps, inputs, n = 3.0, [0, 1, 2], 20_000
    honest = ep.mechanism_ldp_check("polar", vocab, eps, inputs, n, np.random.default_rng(0))
    assert not honest.violated and honest.eps_hat <= eps
    # negative control, written out by hand: the release runs at κ = 3ε but claims ε
    unit = vocab.unit.astype(np.float64)

    def sample(a: int, k: int, gen: np.random.Generator) -> np.ndarray:
        return polar_release(vocab, np.full(k, a, np.int64), np.zeros(k, np.int8),
                             np.full(k, 3 * eps), gen, ReleaseOptions())

    bad = ep.empirical_ldp_check(sample, lambda a, b: float(np.linalg.norm(unit[a] - unit[b])),
                                 eps, inputs, vocab.size, n, np.random.default_rng(1))
    assert bad.violated and bad.max_excess > 0 and bad.eps_hat > eps


def test_grids_and_seeds() -> None:
    name, paper = parse_grid("paper")
    assert name == "paper" and paper[0].group_eps == (150, 50, 450, 350)
    assert paper[-1].group_eps == (350, 250, 650, 550) and len(paper) == 5
    name, d384 = parse_grid("d384")
    assert name == "d384" and d384[1].group_eps == (50, 25, 100, 75)
    assert parse_grid("5,7")[1][1].group_eps == (14, 7, 28, 21)
    for bad in ("", "x", "5,-1", "inf"):
        with pytest.raises(BadInput):
            parse_grid(bad)
    assert parse_seeds("3") == (0, 1, 2) and parse_seeds("1,4") == (1, 4)
    for bad in ("0", "a", "1,1"):
        with pytest.raises(BadInput):
            parse_seeds(bad)
    with pytest.raises(BadInput, match="task set"):
        EvalOptions(out=Path("x"), task_sets=("nope",))
    with pytest.raises(BadInput, match="mechanism"):
        EvalOptions(out=Path("x"), mechanisms=("gauss",))


def test_loaders(tmp_path: Path) -> None:
    (tmp_path / et.AGNEWS_FILE).write_text(
        '"3","Stocks rise","Markets\\up today."\n"2","Cup final","Team wins."\n', "utf-8")
    ag = et.load_agnews(tmp_path)
    assert ag.texts == ["Stocks rise Markets up today.", "Cup final Team wins."]
    assert ag.labels.tolist() == [2, 1] and ag.task == et.AGNEWS_TASK
    (tmp_path / et.YELP_FILE).write_text("Great food.\t1\nMeh\t0\n", "utf-8")
    assert et.load_yelp(tmp_path).labels.tolist() == [1, 0]
    squad = ('{"data": [{"paragraphs": [{"context": "Paris is in France.", "qas": ['
             '{"id": "a", "question": "Where?", "answers": [{"text": "France", '
             '"answer_start": 12}], "is_impossible": false},'
             '{"id": "b", "question": "Who?", "answers": [], "is_impossible": true}]}]}]}')
    (tmp_path / et.SQUAD_FILE).write_text(squad, "utf-8")
    items = et.load_squad(tmp_path)
    assert len(items) == 1 and items[0].answers == [(12, 18)]
    (tmp_path / et.AGNEWS_FILE).write_text('"9","x","y"\n', "utf-8")
    with pytest.raises(BadInput, match="row 1"):
        et.load_agnews(tmp_path)
    with pytest.raises(BadInput, match="missing dataset file"):
        et.load_yelp(tmp_path / "nowhere")
    with pytest.raises(BadInput, match="--data-dir"):
        et.resolve_data_dir(tmp_path / "absent")
