"""Label selection, the seeded split, window sizes, and the cached-prefix classifier."""

from __future__ import annotations

import numpy as np
import pytest

from veil.errors import BadInput
from veil.train.config import TrainConfig
from veil.train.data import (
    LabelSpace,
    choose_max_length,
    make_windows,
    select_labels,
    split_indices,
)


def test_select_labels_top_exclude_and_rare() -> None:
    rows = [["a", "b"], ["a"], ["a", "c"], ["b"], ["d"], ["skip", "a"], ["skip"], ["skip"]]
    kept, rare = select_labels(rows, top=3, exclude=("skip",))
    assert kept == ["a", "b"] and rare == {"c": 1}  # top 3 = a, b, c; c is rare
    with pytest.raises(BadInput, match="fewer than 2 examples"):
        select_labels(rows, top=3, exclude=("skip",), strict=True)
    with pytest.raises(BadInput, match="fewer than two"):
        select_labels([["a"], ["a"], ["b"]])
    kept, _ = select_labels(rows, fixed=("skip", "a"))
    assert kept == ["skip", "a"]


def test_label_space_encoding() -> None:
    multi = LabelSpace(("a", "b"), True)
    assert multi.encode([["b"], [], ["a", "b", "zz"]]).tolist() == [[0, 1], [0, 0], [1, 1]]
    single = LabelSpace(("a", "b"), False)
    y = single.encode([["b"], ["zz"], ["a"]])
    assert y.tolist() == [1, -1, 0]
    assert single.onehot(np.array([1, 0])).tolist() == [[0, 1], [1, 0]]


def test_split_is_a_seeded_partition() -> None:
    tr, va, te = split_indices(101, 0.1, 0.2, seed=3)
    assert len(va) == 10 and len(te) == 20 and len(tr) == 71
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(101))
    again = split_indices(101, 0.1, 0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again, strict=True))
    assert not np.array_equal(te, split_indices(101, 0.1, 0.2, seed=4)[2])


def test_max_length_covers_99_percent_and_respects_the_model() -> None:
    lengths = np.arange(1, 1001)
    got = choose_max_length(lengths, 0.99, 2048)
    assert (lengths <= got).mean() >= 0.99 and got % 8 == 0 and got - 8 < 990
    assert choose_max_length(lengths, 0.99, 256) == 256


def test_windows_cover_every_token_when_chunking() -> None:
    ids = list(range(100, 150))
    wins = make_windows(ids, 16, 1, 2, chunk=True)
    assert all(w[0] == 1 and w[-1] == 2 and len(w) <= 16 for w in wins)
    assert {t for w in wins for t in w[1:-1]} == set(ids)
    assert make_windows(ids, 16, 1, 2, chunk=False) == [[1, *ids[:14], 2]]


@pytest.mark.parametrize(("change", "needle"), [
    ({"epsilon": 0.0}, "epsilon"), ({"epsilon": float("nan")}, "epsilon"),
    ({"delta": 1.0}, "delta"), ({"batch_size": 0}, "batch-size"),
    ({"adapter": "bogus"}, "adapter"), ({"val_frac": 0.5, "test_frac": 0.45}, "too little"),
    ({"clip": -1.0}, "clip"), ({"lora_layers": 0}, "lora-layers"),
])
def test_config_rejects_bad_options(change: dict, needle: str) -> None:
    with pytest.raises(BadInput, match=needle):
        TrainConfig(data="x.csv", out="o", **change)


def test_config_fingerprint_tracks_training_options_only() -> None:
    base = TrainConfig(data="x.csv", out="o")
    assert base.fingerprint() == base.replace(quiet=True, resume=True, merge=True).fingerprint()
    assert base.fingerprint() != base.replace(epsilon=2.0).fingerprint()
    assert base.to_dict()["epsilon"] == 1.0
    assert TrainConfig(data="x.csv", out="o", epsilon=float("inf")).to_dict()["epsilon"] == "inf"


def test_cached_prefix_gives_the_whole_model_logits() -> None:
    import torch

    from veil.train.classifier import build_classifier, core, pad, pad_states
    from veil.train.features import Encoded, attach_prefix, score

    torch.manual_seed(0)
    whole = build_classifier("tiny-bert", 3, lora_layers=None, seed=1)
    cached = build_classifier("tiny-bert", 3, lora_layers=1, seed=1)
    assert core(whole).start_layer == 0 and core(cached).start_layer == 1
    names = [n for n, p in cached.named_parameters() if p.requires_grad]
    assert all("layer.1." in n or "classifier" in n for n in names)
    assert any("layer.0." in n for n, p in whole.named_parameters() if p.requires_grad)
    with torch.no_grad():  # LoRA B starts at zero: randomise it, then use the same weights
        gen = torch.Generator().manual_seed(5)
        for n, p in cached.named_parameters():
            if "lora_B" in n:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
        mine = dict(whole.named_parameters())
        for n, p in cached.named_parameters():
            if n in mine:
                mine[n].copy_(p)
    wins = [[[101, 7, 8, 9, 102]], [[101, 20, 102]], [[101, 5, 6, 7, 8, 9, 10, 102]]]
    enc = Encoded(wins, [5, 3, 8], 16)
    attach_prefix(cached, enc)
    a = score(whole, Encoded(wins, [5, 3, 8], 16), True)
    b = score(cached, enc, True)
    c = score(cached, enc, True, use_prefix=False)
    assert np.allclose(a, b, atol=1e-5) and np.allclose(b, c, atol=1e-5)
    batch = pad([w[0] for w in wins])
    states = pad_states([p[0] for p in enc.prefix])
    assert torch.equal(batch["attention_mask"], states["attention_mask"])
