"""PrivacyReport <-> privacy.json: round trips, infinity, statements, validation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from veil.errors import BadInput
from veil.privacy.composition import ReleasePart
from veil.privacy.report import UNITS, PrivacyReport


def _strict_json(text: str) -> object:
    def reject(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=reject)


def _dpsgd_report() -> PrivacyReport:
    return PrivacyReport.build(
        "dp-sgd", "record", 2.5, 1e-5, "prv", noise_multiplier=1.1, sample_rate=0.01,
        steps=1000, clipping_norm=1.0,
        composition=[ReleasePart("training", "subsampled_gaussian", noise_multiplier=1.1,
                                 sample_rate=0.01, steps=1000)],
        extra={"per_group_epsilon": {"names": 2.0, "dates": "inf"}, "sites": [1, 2]},
        dataset_fingerprint="0f" * 32,
    )


def test_round_trip_dict_and_file(tmp_path: Path) -> None:
    report = _dpsgd_report()
    assert PrivacyReport.from_dict(report.to_dict()) == report
    path = tmp_path / "out" / "privacy.json"
    report.write(path)
    assert PrivacyReport.read(path) == report
    data = _strict_json(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    assert data["unit"] == "record" and data["epsilon"] == 2.5 and data["delta"] == 1e-5
    assert data["composition"][0]["kind"] == "subsampled_gaussian"
    assert data["veil_version"] and data["created"].endswith("+00:00")
    assert not list(tmp_path.joinpath("out").glob(".*"))  # no temp file left behind


def test_infinite_epsilon_serialised_as_string_and_read_back(tmp_path: Path) -> None:
    report = PrivacyReport.build("verbatim", "token", math.inf, 0.0,
                                 extra={"worst": math.inf})
    path = tmp_path / "privacy.json"
    report.write(path)
    data = _strict_json(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    assert data["epsilon"] == "inf" and data["extra"]["worst"] == "inf"
    back = PrivacyReport.read(path)
    assert back.epsilon == math.inf
    assert "NO formal privacy guarantee" in back.statement
    assert PrivacyReport.build("x", "record", "inf", 0.0).epsilon == math.inf


@pytest.mark.parametrize("unit", UNITS)
def test_statement_mentions_unit_epsilon_delta(unit: str) -> None:
    report = PrivacyReport.build("gaussian", unit, 0.75, 3e-6, "prv", noise_multiplier=2.0)
    text = report.statement
    assert f"unit of privacy: {unit}" in text
    assert "ε = 0.75" in text and "δ = 3e-06" in text
    assert "anyone who sees the output" in text
    assert "NO formal" not in text
    pure = PrivacyReport.build("laplace", unit, 1.0, 0.0, "basic").statement
    assert "δ = 0" in pure and "pure" in pure


def test_given_statement_is_kept() -> None:
    report = PrivacyReport.build("stamp", "token", 3.0, 0.0, statement="Custom paragraph.")
    assert report.statement == "Custom paragraph."


@pytest.mark.parametrize(
    "bad",
    [
        {"unit": "person"},
        {"epsilon": -0.1},
        {"epsilon": float("nan")},
        {"delta": 1.0},
        {"delta": -1e-9},
        {"sample_rate": 1.5},
        {"steps": -1},
        {"mechanism": ""},
    ],
)
def test_invalid_fields_rejected(bad: dict[str, object]) -> None:
    args: dict[str, object] = {"mechanism": "m", "unit": "record", "epsilon": 1.0,
                               "delta": 1e-6} | bad
    with pytest.raises(ValueError):
        PrivacyReport.build(**args)  # type: ignore[arg-type]


def test_read_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "privacy.json"
    bad.write_text("{not json")
    with pytest.raises(BadInput, match=r"privacy\.json"):
        PrivacyReport.read(bad)
    data = _dpsgd_report().to_dict() | {"surprise": 1}
    bad.write_text(json.dumps(data))
    with pytest.raises(BadInput, match="unknown"):
        PrivacyReport.read(bad)
    data = _dpsgd_report().to_dict() | {"unit": "document"}
    bad.write_text(json.dumps(data))
    with pytest.raises(BadInput, match="unit"):
        PrivacyReport.read(bad)
    with pytest.raises(BadInput):
        PrivacyReport.read(tmp_path / "missing.json")
