"""README tables: `veil synth` on AG News and IU X-ray split over sites, per cell and seed.

Setup (fixed, see docs/synth.md "Real-data results"):

* AG News: ../shared/datasets/ag_news_test.csv (`description` field as text, class name as
  label). 2,000 articles drawn with seed 0; the first 400 are held out for `veil synth-eval`,
  the other 1,600 are split over 10 sites by `veil split` (`--dirichlet 0.3 --seed 0` or
  `--iid`). The 100-site federation (for the paper's 1 %-strong claim) splits all 7,200
  articles outside the same 400 held-out ones.
* IU X-ray: ../shared/datasets/iu_xray_reports.csv, text = findings + impression, label =
  the primary finding (the first `Problems` entry), reports whose primary finding is one of
  the five most frequent (normal, Lung, Cardiomegaly, Opacity, Calcified Granuloma); 400
  drawn with seed 0 are held out, the rest split over 10 sites by `--dirichlet 0.3 --seed 0`.

Usage:
    python benchmarks/results_synth.py prepare --out-root DIR
    python benchmarks/results_synth.py run --cells dir-e8-vote,dir-e8-novote \
        --seeds 0,1,2 --out-root DIR
    python benchmarks/results_synth.py collect --out-root DIR [--json FILE]

Each cell × seed is one `veil synth` call followed by one `veil synth-eval` call (the
commands a user runs); a cell whose eval.json exists is skipped unless a site dropped out of
it (the run finishes without a failed site; `collect` leaves such runs out and `run` redoes
them). Run at most two at a time on a 24 GiB machine: Ray kills simulation workers when
memory runs low, and the sites it kills drop out. `collect` prints a
Markdown table of the mean ± sd over seeds. CPU-heavy: 5–15 minutes per run on one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CLASSES = ("World", "Sports", "Business", "Sci/Tech")  # ag_news_classes.txt, label 1..4
N_DRAWN, N_HELDOUT = 2000, 400


@dataclass(frozen=True)
class Cell:
    """One row of the table: which federation, which strong sites, ε and refinement."""

    sites: str                 # folder under the output root
    strong: str                # --strong-sites
    epsilon: str
    refine: bool
    label: str
    dataset: str = "agnews"
    extra: tuple[str, ...] = ()   # veil synth options after the common ones (the last wins)


TOP4_DIR = "site_4,site_9,site_2,site_0"   # the four largest Dirichlet sites
# the largest site and the ten largest sites of the 100-site split (seed 0): 370 / 2,159 records
TOP1_100 = "site_50"
TOP10_100 = "site_50,site_8,site_76,site_95,site_52,site_53,site_60,site_44,site_64,site_88"
CELLS: dict[str, Cell] = {
    "dir-e8-novote": Cell("sites-dir", "site_4", "8", False, "Dirichlet 0.3, 1 strong / 10"),
    "dir-e8-vote": Cell("sites-dir", "site_4", "8", True, "Dirichlet 0.3, 1 strong / 10"),
    "dir-einf-novote": Cell("sites-dir", "site_4", "inf", False, "Dirichlet 0.3, 1 strong / 10"),
    "dir-einf-vote": Cell("sites-dir", "site_4", "inf", True, "Dirichlet 0.3, 1 strong / 10"),
    "dir-e4-novote": Cell("sites-dir", "site_4", "4", False, "Dirichlet 0.3, 1 strong / 10"),
    "dir-e4-vote": Cell("sites-dir", "site_4", "4", True, "Dirichlet 0.3, 1 strong / 10"),
    "dir40-e8-novote": Cell("sites-dir", TOP4_DIR, "8", False, "Dirichlet 0.3, 4 strong / 10"),
    "dir40-e8-vote": Cell("sites-dir", TOP4_DIR, "8", True, "Dirichlet 0.3, 4 strong / 10"),
    "iid-e8-novote": Cell("sites-iid", "site_0", "8", False, "IID, 1 strong / 10"),
    "iid-e8-vote": Cell("sites-iid", "site_0", "8", True, "IID, 1 strong / 10"),
    # the paper's claim: 1 % strong sites + voting vs 10 % strong without voting
    "fed100-1-vote": Cell("sites-100", TOP1_100, "8", True, "Dirichlet 0.3, 1 strong / 100"),
    "fed100-1-novote": Cell("sites-100", TOP1_100, "8", False, "Dirichlet 0.3, 1 strong / 100"),
    "fed100-10-novote": Cell("sites-100", TOP10_100, "8", False, "Dirichlet 0.3, 10 strong / 100"),
    "fed100-10-vote": Cell("sites-100", TOP10_100, "8", True, "Dirichlet 0.3, 10 strong / 100"),
}
IU_STRONG = "site_5"   # the largest site of the IU X-ray Dirichlet split (seed 0)
for _eps in ("8", "inf"):
    for _refine in (False, True):
        CELLS[f"iu-e{_eps}-{'vote' if _refine else 'novote'}"] = Cell(
            "sites-iu", IU_STRONG, _eps, _refine, "IU X-ray, 1 strong / 10", "iu-xray")
# a longer fine-tuning budget: 3 rounds of 2 local epochs (≈ 60 DP steps instead of ≈ 10)
for _refine in (False, True):
    CELLS[f"iu-r3e2-e8-{'vote' if _refine else 'novote'}"] = Cell(
        "sites-iu", IU_STRONG, "8", _refine, "IU X-ray, 1 strong / 10, 3 rounds × 2 epochs",
        "iu-xray", ("--rounds", "3", "--local-epochs", "2"))
SYNTH_ARGS = ["--text-col", "text", "--code-cols", "label", "--generator", "smollm2-135m",
              "--rounds", "1", "--local-epochs", "1", "--sample-rate", "0.1",
              "--samples", "200", "--k", "3", "--quiet"]
LENGTHS = {"agnews": ["--max-new-tokens", "48", "--max-length", "64"],
           "iu-xray": ["--max-new-tokens", "64", "--max-length", "96"]}
IU_CODES = ("normal", "Lung", "Cardiomegaly", "Opacity", "Calcified Granuloma")


def _veil(*args: str) -> None:
    cmd = [str(Path(sys.executable).with_name("veil")), *args]
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def prepare(root: Path) -> None:
    """Draw the articles, hold 400 out, write the 10- and 100-site federations."""
    import pandas as pd

    df = pd.read_csv(SHARED / "ag_news_test.csv", header=None, names=["label", "title", "text"])
    df["label"] = df["label"].map(lambda i: CLASSES[int(i) - 1])
    drawn = df.sample(n=N_DRAWN, random_state=0)
    heldout, train = drawn.iloc[:N_HELDOUT], drawn.iloc[N_HELDOUT:]
    rest = df.drop(index=heldout.index)
    root.mkdir(parents=True, exist_ok=True)
    heldout[["text", "label"]].to_csv(root / "heldout.csv", index=False)
    train[["text", "label"]].to_csv(root / "train.csv", index=False)
    rest[["text", "label"]].to_csv(root / "train-7200.csv", index=False)
    iu = pd.read_csv(SHARED / "iu_xray_reports.csv")
    iu["text"] = (iu["findings"].fillna("") + " " + iu["impression"].fillna("")).str.strip()
    iu["label"] = iu["Problems"].fillna("").str.split(";").str[0].str.strip()
    iu = iu[(iu["text"] != "") & iu["label"].isin(IU_CODES)]
    iu_held = iu.sample(n=N_HELDOUT, random_state=0)
    iu_held[["text", "label"]].to_csv(root / "iu-heldout.csv", index=False)
    iu.drop(index=iu_held.index)[["text", "label"]].to_csv(root / "iu-train.csv", index=False)
    for data, folder, n, skew in (("train.csv", "sites-dir", 10, ["--dirichlet", "0.3"]),
                                  ("train.csv", "sites-iid", 10, ["--iid"]),
                                  ("train-7200.csv", "sites-100", 100, ["--dirichlet", "0.3"]),
                                  ("iu-train.csv", "sites-iu", 10, ["--dirichlet", "0.3"])):
        if not (root / folder).exists():
            _veil("split", str(root / data), "--text-col", "text", "--label-col", "label",
                  "--sites", str(n), *skew, "--seed", "0", "--out", str(root / folder))


def run(root: Path, cells: list[str], seeds: list[int]) -> None:
    """One synth + synth-eval per cell and seed (skipped when its eval.json exists)."""
    for seed in seeds:
        for name in cells:
            cell = CELLS[name]
            out = root / "runs" / f"{name}-s{seed}"
            if (out / "eval.json").exists():
                if not _failed_sites(out / "synth" / "metrics.json"):
                    continue
                shutil.rmtree(out)  # a site dropped out (e.g. out of memory): run it again
            heldout = "heldout.csv" if cell.dataset == "agnews" else "iu-heldout.csv"
            _veil("synth", "--sites", str(root / cell.sites), *SYNTH_ARGS, *LENGTHS[cell.dataset],
                  "--strong-sites", cell.strong, "--epsilon", cell.epsilon,
                  "--refine" if cell.refine else "--no-refine", *cell.extra, "--seed", str(seed),
                  "--out", str(out / "synth"))
            _veil("synth-eval", str(out / "synth" / "synthetic.jsonl"), str(root / heldout),
                  "--text-col", "text", "--label-col", "label", "--quiet",
                  "--out", str(out / "eval.json"))


METRICS = ("frechet", "precision", "recall", "mauve", "accuracy", "macro_f1")


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _failed_sites(metrics: Path) -> list[str]:
    """Sites that dropped out of a run (e.g. a simulation worker killed for memory)."""
    sites = json.loads(metrics.read_text())["sites"]
    return sorted(name for name, site in sites.items() if site.get("failed_at"))


def collect(root: Path, json_out: Path | None) -> None:
    """Markdown table (mean ± sd over seeds) and, optionally, every run's figures as JSON.

    Runs already in ``json_out`` are kept unless a run of the same cell and seed is on disk
    under ``root`` (which replaces it), so a fresh out-root adds to the published figures.
    """
    rows: dict[str, list[dict[str, Any]]] = {}
    if json_out is not None and json_out.is_file():
        for name, entry in json.loads(json_out.read_text()).items():
            if name in CELLS:
                rows[name] = list(entry["runs"])
    for name in CELLS:
        for path in sorted((root / "runs").glob(f"{name}-s*/eval.json")):
            failed = _failed_sites(path.parent / "synth" / "metrics.json")
            if failed:  # the run finished without them: not the cell's federation
                print(f"left out {path.parent.name}: {len(failed)} site(s) failed "
                      f"({', '.join(failed[:3])}{', …' if len(failed) > 3 else ''})",
                      file=sys.stderr)
                continue
            run = json.loads(path.read_text())
            run["seed"] = int(path.parent.name.rsplit("-s", 1)[1])
            kept = [r for r in rows.get(name, []) if r.get("seed") != run["seed"]]
            rows[name] = sorted([*kept, run], key=lambda r: int(r.get("seed", 0)))
    print("| federation | ε | weak sites vote | seeds | Fréchet ↓ | k-NN precision | "
          "k-NN recall | MAUVE | downstream acc. | macro-F1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = {name: rows[name] for name in CELLS if name in rows}  # the table's order
    for name, runs in rows.items():
        cell = CELLS[name]
        eps = "∞" if cell.epsilon == "inf" else cell.epsilon
        figures = " | ".join(_mean_sd([float(r[m]) for r in runs]) for m in METRICS)
        print(f"| {cell.label} | {eps} | {'yes' if cell.refine else 'no'} | {len(runs)} | "
              f"{figures} |")
    if json_out is not None:
        json_out.write_text(json.dumps(
            {name: {"cell": CELLS[name].__dict__, "runs": runs} for name, runs in rows.items()},
            indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("prepare", "run", "collect"))
    parser.add_argument("--out-root", type=Path, default=Path("/tmp/veil-synth"))
    parser.add_argument("--cells", default="dir-e8-novote,dir-e8-vote")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.action == "prepare":
        prepare(args.out_root)
    elif args.action == "run":
        unknown = [c for c in args.cells.split(",") if c not in CELLS]
        if unknown:
            parser.error(f"unknown cells: {', '.join(unknown)} (choose from {', '.join(CELLS)})")
        run(args.out_root, args.cells.split(","), [int(s) for s in args.seeds.split(",")])
    else:
        collect(args.out_root, args.json)


if __name__ == "__main__":
    main()
