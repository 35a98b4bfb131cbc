"""benchmarks/train_seed_gap.py: the gap's Welch interval, checked against the closed form."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

from scipy.stats import t as student_t

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_seed_gap.py"


def _folder(root: Path, name: str, rows: dict[str, float]) -> Path:
    folder = root / name
    folder.mkdir()
    payload = {spec: {"weighted_f1": {"value": v, "ci95": None}} for spec, v in rows.items()}
    (folder / "results.json").write_text(json.dumps(payload))
    return folder


def test_gap_interval_is_welchs(tmp_path: Path) -> None:
    a = [0.90, 0.88, 0.89, 0.91]
    b = [0.85, 0.86, 0.82]
    np_dirs = [_folder(tmp_path, f"np{i}", {"lora:inf": v, "lora:10": 0.0})
               for i, v in enumerate(a)]
    dp_dirs = [_folder(tmp_path, f"dp{i}", {"lora:10": v}) for i, v in enumerate(b)]
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--nonprivate", *map(str, np_dirs),
         "--nonprivate-spec", "lora:inf", "--dp", *map(str, dp_dirs)],
        capture_output=True, text=True, check=True).stdout

    def mean(x: list[float]) -> float:
        return sum(x) / len(x)

    def var_of_mean(x: list[float]) -> float:
        m = mean(x)
        return sum((v - m) ** 2 for v in x) / (len(x) - 1) / len(x)

    va, vb = var_of_mean(a), var_of_mean(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch–Satterthwaite
    gap = mean(a) - mean(b)
    half = student_t.ppf(0.975, df) * math.sqrt(va + vb)
    found = re.search(r"gap ([\d.]+), Welch 95 % CI \[([\d.]+), ([\d.]+)\] \(df ([\d.]+)\)", out)
    assert found, out
    printed = [float(found[i]) for i in range(1, 5)]
    expected = [gap, gap - half, gap + half, df]
    for got, want, digits in zip(printed, expected, (3, 3, 3, 1), strict=True):
        assert abs(got - want) <= 0.5 * 10**-digits + 1e-9
    # the gap (0.052) is well above 0.03: the one-sided p of "gap ≥ 0.03" is large
    p = float(re.search(r"p\(gap ≥ 0.03\) = ([\d.]+)", out)[1])  # type: ignore[index]
    assert p > 0.5


def test_a_folder_with_several_rows_needs_a_spec(tmp_path: Path) -> None:
    both = _folder(tmp_path, "both", {"lora:inf": 0.9, "lora:10": 0.8})
    one = _folder(tmp_path, "one", {"lora:10": 0.8})
    done = subprocess.run([sys.executable, str(SCRIPT), "--nonprivate", str(both), str(both),
                           "--dp", str(one), str(one)], capture_output=True, text=True)
    assert done.returncode != 0
    assert "pick one with --nonprivate-spec" in done.stderr
