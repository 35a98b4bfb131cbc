"""Label-description head initialisation: closed form, padding-independence, and the
zero-shot score it starts from, checked against sentence-transformers' own pooling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from veil.errors import BadInput
from veil.models import load_encoder, load_sentence_encoder, load_tokenizer
from veil.train.classifier import build_classifier, core, evaluating
from veil.train.config import TrainConfig
from veil.train.head_init import description_embeddings, label_head_weight
from veil.train.teacher import default_descriptions

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LABELS = ["cardiomegaly", "pleural effusion", "rib fracture", "pneumonia"]
DOCS = ["the heart is enlarged", "small right pleural effusion",
        "healing rib fracture on the left", "patchy pneumonia in the left lower lobe",
        "no acute cardiopulmonary abnormality"]


def _standardise(x: np.ndarray, eps: float = 0.0) -> np.ndarray:
    x = x - x.mean(-1, keepdims=True)
    return np.asarray(x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps))


def test_weight_is_centred_correlation_times_scale() -> None:
    rng = np.random.default_rng(0)
    emb = torch.tensor(_standardise(rng.normal(size=(5, 32))), dtype=torch.float64)
    z = _standardise(rng.normal(size=(7, 32)))
    w = label_head_weight(emb, 3.0).numpy()
    corr = z @ emb.numpy().T / 32  # Pearson correlation of standardised vectors
    expected = 3.0 * (corr - corr.mean(1, keepdims=True))
    assert np.allclose(z @ w.T, expected, atol=1e-12)
    assert np.allclose(w.sum(0), 0.0, atol=1e-12)  # no label starts favoured


def test_description_embeddings_ignore_padding() -> None:
    """A batch of descriptions of different lengths equals each one run alone (tiny-bert)."""
    encoder = load_encoder("tiny-bert", seed=0)
    tokenizer = load_tokenizer("tiny-bert")
    descs = {"a": ["short one", "a much longer description of the first label here"],
             "b": ["second label"]}
    got = description_embeddings(encoder, tokenizer, descs, ["a", "b"]).numpy()
    for row, label in zip(got, ("a", "b"), strict=True):
        singles = []
        for text in descs[label]:
            batch = tokenizer([text], return_tensors="pt")
            with torch.no_grad():
                encoder.eval()
                states = encoder(**batch).last_hidden_state[0].numpy()
            singles.append(_standardise(states.mean(0), 1e-5))
        assert np.allclose(row, _standardise(np.mean(singles, 0), 1e-5), atol=1e-4)


def test_initial_logits_are_the_zero_shot_score_from_sentence_transformers() -> None:
    """Before any step, logit_l − bias_l = s · (corr(doc, label l) − mean over labels), where
    the document and description embeddings come from sentence-transformers (minilm)."""
    scale = 20.0
    model = build_classifier("minilm", len(LABELS), adapter="lora", lora_layers=2,
                             head_init="labels", head_init_scale=scale, label_names=LABELS)
    tokenizer = load_tokenizer("minilm")
    batch = tokenizer(DOCS, padding=True, return_tensors="pt")
    with evaluating(model), torch.no_grad():
        logits = model(input_ids=batch["input_ids"],
                       attention_mask=batch["attention_mask"]).logits.numpy()
    logits = logits - core(model).classifier.bias.detach().numpy()

    st = load_sentence_encoder("minilm")
    doc = _standardise(st.encode(DOCS, convert_to_numpy=True).astype(np.float64))
    descs = default_descriptions(LABELS)
    lab = np.stack([_standardise(_standardise(
        st.encode(descs[name], convert_to_numpy=True).astype(np.float64)).mean(0))
        for name in LABELS])
    corr = doc @ lab.T / doc.shape[1]
    expected = scale * (corr - corr.mean(1, keepdims=True))
    # layer norm's ε (1e-5 on the variance of the raw pooled states, ≈ 0.008) is the only
    # difference: sentence-transformers hands back unit vectors, standardised here without it
    assert np.allclose(logits, expected, rtol=2e-3, atol=1e-3)
    assert (expected.argmax(1)[:4] == np.arange(4)).all()  # the prior already points right


def test_user_descriptions_replace_the_templates(tmp_path: Path) -> None:
    path = tmp_path / "descriptions.json"
    path.write_text(json.dumps({"b": "the second label"}))
    from veil.train.facade import _descriptions

    config = TrainConfig(data=tmp_path / "d.csv", out=tmp_path / "o", model="tiny-bert",
                         head_init="labels", label_descriptions=path)
    descs = _descriptions(config, ["a", "b"])
    assert descs == {"a": default_descriptions(["a"])["a"], "b": ["the second label"]}
    with_file = build_classifier("tiny-bert", 2, head_init="labels", label_names=["a", "b"],
                                 descriptions=descs)
    default = build_classifier("tiny-bert", 2, head_init="labels", label_names=["a", "b"])
    w1, w0 = core(with_file).classifier.weight, core(default).classifier.weight
    assert not torch.allclose(w1, w0)
    random = build_classifier("tiny-bert", 2, label_names=["a", "b"])
    assert not torch.allclose(core(random).classifier.weight, w0)


@pytest.mark.parametrize("options", [{"head_init": "zero"}, {"head_init_scale": 0.0},
                                     {"head_init_scale": float("nan")},
                                     {"label_descriptions": "d.json"}])
def test_bad_options_are_refused(tmp_path: Path, options: dict[str, object]) -> None:
    with pytest.raises(BadInput):
        TrainConfig(data=tmp_path / "d.csv", out=tmp_path / "o", **options)  # type: ignore[arg-type]


def test_pooled_standardisation_matches_torch_layer_norm() -> None:
    """The helper above is the classifier's standardisation (F.layer_norm, no weights)."""
    x = np.random.default_rng(1).normal(size=(3, 16))
    ours = _standardise(x, eps=1e-5)
    torch_ln = F.layer_norm(torch.tensor(x), (16,)).numpy()
    assert np.allclose(ours, torch_ln, atol=1e-6)
