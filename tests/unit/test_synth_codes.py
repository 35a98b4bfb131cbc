"""Control codes, the DP profile's server side, quotas and the run config."""

from __future__ import annotations

import math

import numpy as np
import pytest

from veil.errors import BadInput
from veil.synth.codes import CodeBook, code_prefix, normalise_value, record_codes, vocabulary
from veil.synth.config import SynthConfig, parse_epsilon
from veil.synth.profile import exact_counts, global_profile, quotas


def test_prefix_format_and_values() -> None:
    assert code_prefix(["finding", "site_type"], ["Cardiomegaly", "community"]) == (
        "Finding: Cardiomegaly | Site type: community\n")
    assert normalise_value("A;B", ";") == "A"
    assert normalise_value(None) == "none"
    assert normalise_value("a|b\nc") == "a b c"
    extra = {"label": ["x", "y;z", ""], "kind": [1, 2, 3]}
    assert record_codes(extra, ["label", "kind"], ";") == [("x", "1"), ("y", "2"), ("none", "3")]
    assert vocabulary([[("b",), ("a",)], [("a",), ("c",)]]) == [("a",), ("b",), ("c",)]


def test_codebook_index_and_fields() -> None:
    book = CodeBook(("label",), (("a",), ("b",)))
    assert book.index(("b",)) == 1 and book.index(("zz",)) is None
    assert book.prefixes() == ["Label: a\n", "Label: b\n"]
    assert book.as_fields(0) == {"label": "a"}
    with pytest.raises(ValueError):
        CodeBook(("label",), (("a",), ("a",)))


def test_profile_clips_normalises_and_guards_all_zero() -> None:
    counts = exact_counts([0, 2, 2, None, 1], 4)
    assert counts.tolist() == [1, 1, 2, 0]
    gp = global_profile([np.array([3.0, -1.0, 1.0]), np.array([1.0, -2.0, 0.0])], 3)
    assert gp.noisy_sum.tolist() == [4.0, -3.0, 1.0]
    assert gp.proportions.tolist() == [0.8, 0.0, 0.2] and not gp.uniform_fallback
    zero = global_profile([np.array([-1.0, -5.0])], 2)
    assert zero.uniform_fallback and zero.proportions.tolist() == [0.5, 0.5]


@pytest.mark.parametrize("total", [1, 7, 100, 2000])
def test_quotas_sum_exactly_and_round_each_share(total: int) -> None:
    p = np.random.default_rng(total).dirichlet(np.ones(9))
    q = quotas(p, total)
    assert q.sum() == total
    assert np.all(np.abs(q - p * total) < 1.0)


def test_config_round_trip_and_validation() -> None:
    cfg = SynthConfig(code_cols=("a", "b"), codes=(("x", "y"),), epsilon=math.inf, k=2)
    again = SynthConfig.from_json(cfg.to_json())
    assert again == cfg
    rc = {"text-col": "body", "code-cols": "label,site", "epsilon": "4", "codes": '[["a","b"]]'}
    c2 = SynthConfig.from_mapping(rc)
    assert c2.code_cols == ("label", "site") and c2.epsilon == 4.0 and c2.codes == (("a", "b"),)
    assert SynthConfig().phases_for("strong") == ("profile", "train")
    assert SynthConfig().phases_for("weak") == ("profile", "vote")
    assert SynthConfig(strong_vote=True).phases_for("strong") == ("profile", "train", "vote")
    assert SynthConfig(refine=False).phases_for("weak") == ("profile",)
    assert SynthConfig(strong_only=True).phases_for("weak") == ()
    for bad in ({"epsilon": 0}, {"k": 0}, {"sample_rate": 1.5}, {"code_cols": ("text",)},
                {"delta": 1.0}, {"candidates_factor": 0.5}):
        with pytest.raises(BadInput):
            SynthConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(BadInput):
        SynthConfig.from_mapping({"no-such-setting": 1})
    assert parse_epsilon("inf") == math.inf
    with pytest.raises(BadInput):
        parse_epsilon("-1")
