"""Label evidence (--adapter evidence): terms, negation scope, per-document features, blocks,
and the per-label model under the DP-SGD engine (clipped sums vs a naive per-example loop)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from veil.privacy.dpsgd import DPConfig, DPTrainer, classification_loss
from veil.train.evidence import (
    COSINE_OFFSET,
    LabelEvidence,
    label_polarity,
    sentences,
    stem,
    term_mentions,
)
from veil.train.evidence_model import MULTI_LABEL_BIAS, EvidenceClassifier
from veil.train.teacher import default_descriptions

warnings.filterwarnings("ignore", message=".*")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

LABELS = ["Cardiomegaly", "Pleural Effusion", "normal"]
DESCRIPTIONS = {"Cardiomegaly": ["the heart is enlarged", "enlarged cardiac silhouette"],
                "Pleural Effusion": ["fluid in the pleural space"]}


@pytest.fixture(scope="module")
def encoder() -> Iterator[Any]:
    from veil.models import load_sentence_encoder

    yield load_sentence_encoder("minilm")


@pytest.fixture(scope="module")
def evidence(encoder: Any) -> LabelEvidence:
    return LabelEvidence(LABELS, DESCRIPTIONS, encoder)


def test_terms_are_content_words_cut_to_six_letters() -> None:
    terms = {lab: list(p) for lab, p in label_polarity(LABELS, DESCRIPTIONS).items()}
    # "the", "is", "in" are stop words; the label name counts; six-letter truncation
    assert terms["Cardiomegaly"] == sorted({"cardio", "heart", "enlarg", "cardia", "silhou"})
    assert terms["Pleural Effusion"] == sorted({"pleura", "effusi", "fluid", "space"})
    assert terms["normal"] == ["normal"]  # no description: only the name
    assert stem("calcified") == stem("calcification") == "calcif"


def test_template_descriptions_add_no_terms(encoder: Any) -> None:
    filled = {**default_descriptions(LABELS), **DESCRIPTIONS}  # as load_descriptions fills in
    ev = LabelEvidence(LABELS, filled, encoder)
    assert ev.polarity == label_polarity(LABELS, DESCRIPTIONS)
    assert ev.descriptions["normal"] == default_descriptions(["normal"])["normal"]
    assert "normal" not in ev.given


@pytest.mark.parametrize(("text", "affirmed", "negated"), [
    ("No pleural effusion.", set(), {"pleura", "effusi"}),
    ("The heart is enlarged. No effusion.", {"heart", "enlarg"}, {"effusi"}),
    ("No effusion but the heart is enlarged.", {"heart", "enlarg"}, {"effusi"}),
    ("Negative for effusion; heart enlarged.", {"heart", "enlarg"}, {"effusi"}),
    ("Heart enlarged without effusion.", {"heart", "enlarg"}, {"effusi"}),
    ("Effusion is not seen.", set(), {"effusi"}),  # a post-negation trigger
    ("Pleural effusion has resolved. Heart enlarged.", {"heart", "enlarg"}, {"pleura", "effusi"}),
    ("Heart enlarged, but effusion resolved.", {"heart", "enlarg"}, {"effusi"}),
    ("Normal heart. Small nodule with effusion.", {"heart", "effusi"}, set()),  # no, not "no"
])
def test_negation_scope(text: str, affirmed: set[str], negated: set[str]) -> None:
    vocabulary = {"heart", "enlarg", "effusi", "pleura"}
    got_a, got_n = term_mentions(text)
    assert got_a & vocabulary == affirmed
    assert got_n & vocabulary == negated


def test_trigger_words_are_neither_affirmed_nor_negated() -> None:
    affirmed, negated = term_mentions("The lungs are clear of focal consolidation. Lungs clear.")
    assert "clear" in affirmed and "clear" not in negated  # only the second sentence's
    assert {"focal", "consol"} <= negated and "lungs" in affirmed
    affirmed, negated = term_mentions("No effusion.")
    assert "no" not in affirmed | negated


def test_polarity_follows_the_descriptions() -> None:
    pol = label_polarity(["normal"], {"normal": ["no pleural effusion", "lungs are clear"]})
    assert pol["normal"] == {"normal": 1, "pleura": -1, "effusi": -1, "lungs": 1, "clear": 1}


def test_sentences_split_on_punctuation_and_lines() -> None:
    assert sentences("A b. C d!\nE f; g: h") == ["A b.", "C d!", "E f;", "g:", "h"]
    assert sentences("   ") == []


def test_features_of_a_document_do_not_depend_on_other_documents(
        evidence: LabelEvidence) -> None:
    """The privacy premise: each row is a function of its own document only."""
    docs = ["The heart is enlarged. No pleural effusion.", "Normal chest.",
            "Small left pleural effusion with fluid.", ""]
    together = evidence.features(docs)
    alone = np.vstack([evidence.features([d]) for d in docs])
    assert together.shape == (4, evidence.n_features)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert np.isfinite(together).all()
    assert evidence.features([]).shape == (0, evidence.n_features)


def test_feature_layout(evidence: LabelEvidence, encoder: Any) -> None:
    doc = "The heart is enlarged. No pleural effusion."
    x = evidence.features([doc])[0]
    v, n_lab, d = evidence.n_terms, len(LABELS), evidence.n_descriptions
    col = {t: i for i, t in enumerate(evidence.vocabulary)}
    assert x[col["enlarg"]] == 1 and x[v + col["enlarg"]] == 0
    assert x[col["effusi"]] == 0 and x[v + col["effusi"]] == 1
    assert x[col["fluid"]] == 0 and x[v + col["fluid"]] == 0
    # summary: Cardiomegaly affirmed, Pleural Effusion negated, normal neither
    np.testing.assert_array_equal(x[2 * v:2 * v + 2 * n_lab], [1, 0, 0, 0, 1, 0])
    # similarity to the first description ("the heart is enlarged"), recomputed here
    emb = encoder.encode(["The heart is enlarged.", "No pleural effusion.", doc,
                          "the heart is enlarged", "no the heart is enlarged"],
                         normalize_embeddings=True)
    s0 = 2 * v + 2 * n_lab
    best = max(emb[0] @ emb[3], emb[1] @ emb[3])
    contrast = max(emb[0] @ emb[3] - emb[0] @ emb[4], emb[1] @ emb[3] - emb[1] @ emb[4])
    assert x[s0] == pytest.approx(best - COSINE_OFFSET, abs=1e-4)
    assert x[s0 + d] == pytest.approx(contrast, abs=1e-4)
    assert x[s0 + 2 * d] == pytest.approx(emb[2] @ emb[3] - COSINE_OFFSET, abs=1e-4)


def test_blocks_hold_own_terms_the_summary_and_own_descriptions(
        evidence: LabelEvidence) -> None:
    v, n_lab, d = evidence.n_terms, len(LABELS), evidence.n_descriptions
    col = {t: i for i, t in enumerate(evidence.vocabulary)}
    blocks = evidence.blocks()
    cardio = set(blocks[0])
    assert {col["enlarg"], v + col["enlarg"]} <= cardio
    assert col["effusi"] not in cardio and v + col["effusi"] not in cardio
    # its own summary (evidence for, against) only: its descriptions negate nothing
    assert not evidence.reads_other_labels("Cardiomegaly")
    assert cardio & set(range(2 * v, 2 * v + 2 * n_lab)) == {2 * v, 2 * v + n_lab}
    s0 = 2 * v + 2 * n_lab
    own_desc = [0, 1]  # Cardiomegaly's two descriptions come first
    assert {s0 + k * d + j for k in range(3) for j in own_desc} <= cardio
    assert s0 + 2 not in cardio  # Pleural Effusion's description
    assert len(blocks[0]) == 2 * len(evidence.terms["Cardiomegaly"]) + 2 + 3 * 2


def test_a_sentence_longer_than_the_window_is_embedded_in_windows(encoder: Any) -> None:
    ev = LabelEvidence(LABELS, DESCRIPTIONS, encoder)
    long_sentence = " ".join(["the heart is enlarged"] * 200)  # > 256 tokens, no full stop
    x = ev.features([long_sentence, "Normal."])
    assert ev.n_windowed == 1
    from veil.train.teacher import encoder_windows

    assert len(encoder_windows(encoder, long_sentence)) >= 3
    assert np.isfinite(x).all()


def test_classifier_logits_and_start(evidence: LabelEvidence) -> None:
    blocks = evidence.blocks()
    model = EvidenceClassifier(blocks, evidence.n_features, multi_label=True)
    x = torch.randn(5, evidence.n_features)
    assert torch.allclose(model(x).logits, torch.full((5, 3), MULTI_LABEL_BIAS))
    torch.manual_seed(0)
    for linear in model.linears():
        torch.nn.init.normal_(linear.weight)
    expected = torch.stack([x[:, b] @ lin.weight[0] + lin.bias[0]
                            for b, lin in zip(blocks, model.linears(), strict=True)], 1)
    assert torch.allclose(model(x).logits, expected, atol=1e-6)
    multi_class = EvidenceClassifier(blocks, evidence.n_features, False)
    assert float(multi_class(x).logits.detach().abs().sum()) == 0
    with pytest.raises(ValueError):
        model(torch.zeros(2, evidence.n_features + 1))
    with pytest.raises(ValueError):
        EvidenceClassifier([[0], []], 4, True)


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_engine_clips_each_record_like_a_naive_loop(task: str) -> None:
    """The DP step's clipped sum over the per-label linears equals a per-example loop."""
    torch.manual_seed(1)
    blocks = [[0, 1, 4], [2, 3, 4, 5], [1, 5]]
    model = EvidenceClassifier(blocks, 6, task == "multi_label")
    for linear in model.linears():
        torch.nn.init.normal_(linear.weight)
    x = torch.randn(8, 6) * 3
    y = ((torch.rand(8, 3) < 0.4).float() if task == "multi_label"
         else torch.randint(0, 3, (8,)))
    loss_fn = classification_loss(task)  # type: ignore[arg-type]
    params = list(model.parameters())
    per_example = [torch.autograd.grad(loss_fn(model, {"features": x[i:i + 1],
                                                       "labels": y[i:i + 1]}).sum(), params)
                   for i in range(8)]
    norms = sorted(float(torch.sqrt(sum(g.pow(2).sum() for g in gs))) for gs in per_example)
    c = norms[4]
    expected = [sum(min(1.0, c / (float(torch.sqrt(sum(g.pow(2).sum() for g in gs))) + 1e-6))
                    * gs[k] for gs in per_example) for k in range(len(params))]
    before = [p.detach().clone() for p in params]
    cfg = DPConfig(noise_multiplier=0.0, max_grad_norm=c, sample_rate=0.1, dataset_size=80,
                   seed=0)
    trainer = DPTrainer(model, torch.optim.SGD(params, lr=1.0), cfg, loss_fn)
    trainer.step({"features": x, "labels": y})
    trainer.close()
    for b, p, e in zip(before, params, expected, strict=True):
        assert torch.allclose((b - p.detach()) * cfg.expected_batch_size, e, atol=1e-5)


def test_feature_cache_returns_the_fresh_features_and_skips_recomputing(
        evidence: LabelEvidence, monkeypatch: pytest.MonkeyPatch) -> None:
    from veil.train import evidence_pipeline

    docs = ["The heart is enlarged.", "No pleural effusion. Long sentence here"]
    fresh = evidence.features(docs)
    first, _ = evidence_pipeline.cached_features(evidence, "minilm", docs)
    np.testing.assert_array_equal(first, fresh)
    calls = []
    monkeypatch.setattr(evidence, "features", lambda texts: calls.append(1) or fresh)
    again, _ = evidence_pipeline.cached_features(evidence, "minilm", docs)
    np.testing.assert_array_equal(again, fresh)
    assert calls == []
    evidence_pipeline.cached_features(evidence, "minilm", [*docs, "another"])
    evidence_pipeline.cached_features(evidence, "mpnet", docs)  # another encoder: a miss
    assert calls == [1, 1]


def test_prior_starts_each_label_on_its_own_affirmed_terms(evidence: LabelEvidence) -> None:
    from veil.train.evidence import PRIOR_WEIGHT

    blocks, prior = evidence.blocks(), evidence.prior()
    model = EvidenceClassifier(blocks, evidence.n_features, True, prior)
    col = {t: i for i, t in enumerate(evidence.vocabulary)}
    for i, (block, linear) in enumerate(zip(blocks, model.linears(), strict=True)):
        w = dict(zip(block, linear.weight[0].tolist(), strict=True))
        own = {col[t] for t in evidence.terms[LABELS[i]]}
        assert {c for c, v in w.items() if v == PRIOR_WEIGHT} == own
        assert all(v == 0.0 for c, v in w.items() if c not in own)  # negated, summary, similarity
    doc = evidence.features(["The heart is enlarged."])
    logits = model(torch.from_numpy(doc)).logits.detach()[0]
    assert logits[0] == pytest.approx(MULTI_LABEL_BIAS + 2 * PRIOR_WEIGHT)  # heart, enlarg
    assert logits[1] == pytest.approx(MULTI_LABEL_BIAS)
    with pytest.raises(ValueError):
        EvidenceClassifier(blocks, evidence.n_features, True, [p[:-1] for p in prior])


def test_prior_and_summary_read_negative_terms_as_evidence_for(encoder: Any) -> None:
    from veil.train.evidence import PRIOR_WEIGHT

    ev = LabelEvidence(["normal", "Pleural Effusion"],
                       {"normal": ["no pleural effusion"], "Pleural Effusion": ["effusion"]},
                       encoder)
    v, col = ev.n_terms, {t: i for i, t in enumerate(ev.vocabulary)}
    block, prior = ev.blocks()[0], ev.prior()[0]
    w = dict(zip(block, prior, strict=True))
    assert w[v + col["effusi"]] == PRIOR_WEIGHT and w[col["effusi"]] == 0.0
    assert w[col["normal"]] == PRIOR_WEIGHT
    # "normal" negates a term, so its model sees every label's summary; the other only its own
    assert ev.reads_other_labels("normal") and not ev.reads_other_labels("Pleural Effusion")
    summary = set(range(2 * v, 2 * v + 4))
    assert summary <= set(block)
    assert summary & set(ev.blocks()[1]) == {2 * v + 1, 2 * v + 3}
    x = ev.features(["No pleural effusion.", "Large pleural effusion."])
    # summary: [for normal, for PE, against normal, against PE]
    np.testing.assert_array_equal(x[0, 2 * v:2 * v + 4], [1, 0, 0, 1])
    np.testing.assert_array_equal(x[1, 2 * v:2 * v + 4], [0, 1, 1, 0])
