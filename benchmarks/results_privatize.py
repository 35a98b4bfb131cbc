"""Produce the privatization results in ``docs/privatize-results.md`` (tables and plots).

Three steps, each re-runnable (every run uses ``--resume``, so an interrupted stage
continues where it stopped):

    python benchmarks/results_privatize.py run STAGE [--out-root DIR]   # long CPU jobs
    python benchmarks/results_privatize.py collect [--out-root DIR]     # results.csv -> docs/
    python benchmarks/results_privatize.py render                       # docs tables + PNGs

``run`` executes the exact ``veil privatize-eval`` commands listed in ``STAGES`` (printed
with ``python benchmarks/results_privatize.py commands``) from the repository root, so
the data come from ``../shared/datasets``. ``collect`` copies each output folder's
``results.csv`` to ``docs/privatize-results/<folder>.csv``; ``render`` reads those CSVs
only and rewrites the part of ``docs/privatize-results.md`` between the
``<!-- results:begin -->`` and ``<!-- results:end -->`` markers, plus the PNGs.
"""

from __future__ import annotations

import argparse
import math
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = DOCS / "privatize-results"
DOC = DOCS / "privatize-results.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
README = ROOT / "README.md"
SUMMARY_BEGIN, SUMMARY_END = "<!-- privatize-summary:begin -->", "<!-- privatize-summary:end -->"
# README summary columns: (task set, mechanism, mode, metric, header)
SUMMARY_COLUMNS = [
    ("agnews", "polar", "stamp", "accuracy", "AG News acc., polar STAMP"),
    ("agnews", "polar", "uniform", "accuracy", "AG News acc., polar uniform"),
    ("agnews", "laplace", "stamp", "accuracy", "AG News acc., Laplace"),
    ("agnews", "polar", "stamp", "tokens_unchanged", "AG News tokens unchanged, polar"),
    ("yelp", "polar", "stamp", "accuracy", "Yelp acc., polar"),
    ("squad", "polar", "stamp", "answer_survival", "SQuAD answers kept, polar"),
    ("phi-demo", "polar", "stamp", "phi_survival", "demo PHI spans surviving, polar"),
    ("phi-demo", "polar", "uniform", "phi_survival", "demo PHI surviving, polar uniform"),
    ("phi-i2b2", "polar", "stamp", "phi_survival", "i2b2 PHI spans surviving, polar"),
    ("phi-i2b2", "polar", "uniform", "phi_survival", "i2b2 PHI surviving, polar uniform"),
]
CMD_BEGIN, CMD_END = "<!-- commands:begin -->", "<!-- commands:end -->"
EVAL = "veil privatize-eval"

# stage -> [(output folder, arguments)]. Each (setting, mechanism, mode, seed) run is
# deterministic given its seed, so a stage may be run seed by seed (--seeds 1, then --seeds 3
# with --resume): the rows are the same as from one --seeds 3 call.
STAGES: dict[str, list[tuple[str, str]]] = {
    "agnews": [
        ("agnews", "--task-set agnews --mechanisms polar,laplace --grid paper --seeds 3"),
        ("agnews", "--task-set agnews --mechanisms polar,laplace --grid d384 --seeds 3"),
        ("agnews", "--task-set agnews --mechanisms polar --grid d384 --modes uniform --seeds 3"),
    ],
    "small": [
        ("small", "--task-set ldp --mechanisms polar,laplace,dchi,exponential"),
        ("small", "--task-set yelp,squad,phi --mechanisms polar,laplace,dchi --grid d384 "
                  "--seeds 3"),
        ("small", "--task-set yelp,squad,phi --mechanisms polar --grid d384 --modes uniform "
                  "--seeds 3"),
        ("small", "--task-set yelp,squad,phi --mechanisms polar,laplace --grid paper --seeds 3"),
    ],
    "limited": [
        ("limited", "--task-set agnews --mechanisms dchi,exponential --grid d384 "
                    "--limit 500 --seeds 3"),
        ("limited", "--task-set yelp,squad,phi --mechanisms exponential --grid d384 --seeds 3"),
        ("limited", "--task-set agnews --mechanisms dchi,exponential --grid paper "
                    "--limit 500 --seeds 3"),
    ],
}

# STAMP paper, Table 1, AG News accuracy (GPT-2 embeddings, d = 768, 50 test articles)
PAPER_AG = {"{150,50,450,350}": (0.54, 0.56), "{200,100,500,400}": (0.64, 0.58),
            "{250,150,550,450}": (0.68, 0.56), "{300,200,600,500}": (0.76, 0.52),
            "{350,250,650,550}": (0.80, 0.52)}
PAPER_AG_NONPRIVATE = 0.92


def commands(out_root: Path) -> list[str]:
    """Every command of every stage, in order."""
    return [f"{EVAL} {args} --out {out_root / folder} --resume"
            for stage in STAGES.values() for folder, args in stage]


def run_stage(stage: str, out_root: Path) -> None:
    """Run one stage's commands (from the repository root)."""
    veil = str(Path(sys.executable).with_name("veil"))
    for folder, args in STAGES[stage]:
        argv = [veil, "privatize-eval", *shlex.split(args), "--out", str(out_root / folder),
                "--resume"]
        print("+", " ".join(argv), flush=True)
        subprocess.run(argv, cwd=ROOT, check=True)


def collect(out_root: Path) -> None:
    """Copy ``<out_root>/<folder>/results.csv`` to ``docs/privatize-results/<folder>.csv``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    for folder in dict.fromkeys(f for stage in STAGES.values() for f, _ in stage):
        src = out_root / folder / "results.csv"
        if src.is_file():
            shutil.copyfile(src, RESULTS / f"{folder}.csv")
            print(f"{src} -> {RESULTS / f'{folder}.csv'}")


def _paper_table(rows: list[dict[str, str]]) -> str:
    from veil.privatize.eval_report import aggregate

    agg = aggregate(rows)
    sub = agg[(agg["task_set"] == "agnews") & (agg["grid"] == "paper")]
    if sub.empty:
        return ""
    ref = agg[(agg["task_set"] == "agnews") & (agg["mode"] == "nonprivate")]
    nonpriv = float(ref["mean"].iloc[0]) if len(ref) else math.nan

    def cell(setting: str, mech: str, metric: str) -> str:
        hit = sub[(sub["setting"] == setting) & (sub["mechanism"] == mech) &
                  (sub["mode"] == "stamp") & (sub["metric"] == metric)]
        if hit.empty:
            return "–"
        m, sd, n = float(hit["mean"].iloc[0]), float(hit["sd"].iloc[0]), int(hit["n"].iloc[0])
        return f"{m:.3f} ± {sd:.3f}" if n > 1 else f"{m:.3f}"

    n_docs = int(sub["n_docs"].max())
    lines = ["| {G1,G2,G3,G4} | paper Polar | paper Laplace | veil polar | veil laplace | "
             "veil polar: tokens unchanged | veil laplace: tokens unchanged |",
             "|---|---|---|---|---|---|---|"]
    for setting, (pp, pl) in PAPER_AG.items():
        lines.append(f"| {setting} | {pp:.2f} | {pl:.2f} | {cell(setting, 'polar', 'accuracy')} "
                     f"| {cell(setting, 'laplace', 'accuracy')} | "
                     f"{cell(setting, 'polar', 'tokens_unchanged')} | "
                     f"{cell(setting, 'laplace', 'tokens_unchanged')} |")
    lines.append(f"| non-private | {PAPER_AG_NONPRIVATE:.2f} | {PAPER_AG_NONPRIVATE:.2f} | "
                 f"{nonpriv:.3f} | {nonpriv:.3f} | 1 | 1 |")
    return (f"### AG News against the paper's Table 1 (paper: 50 articles, GPT-2 d = 768; veil: "
            f"{n_docs} articles, minilm d = 384)\n\n" + "\n".join(lines) + "\n")


def _summary_table(rows: list[dict[str, str]]) -> str:
    """The README's one-table summary: the d384 grid, polar (STAMP and uniform) vs Laplace."""
    from veil.privatize.eval_report import aggregate

    agg = aggregate(rows)
    agg = agg[agg["task_set"].isin({c[0] for c in SUMMARY_COLUMNS})]
    grid = agg[agg["grid"] == "d384"]
    settings = list(dict.fromkeys(grid["setting"]))
    if not settings:
        return ""

    def cell(setting: str, task: str, mech: str, mode: str, metric: str) -> str:
        hit = grid[(grid["setting"] == setting) & (grid["task_set"] == task) &
                   (grid["mechanism"] == mech) & (grid["mode"] == mode) &
                   (grid["metric"] == metric)]
        if hit.empty:
            return "–"
        m, sd, n = float(hit["mean"].iloc[0]), float(hit["sd"].iloc[0]), int(hit["n"].iloc[0])
        return f"{m:.2f} ± {sd:.2f} ({n})" if n > 1 else f"{m:.2f} (1)"

    head = "| base ε (G1..G4 = 2:1:4:3 × ε) | " + " | ".join(c[4] for c in SUMMARY_COLUMNS) + " |"
    lines = [head, "|---" * (len(SUMMARY_COLUMNS) + 1) + "|"]
    for setting in settings:
        lines.append(f"| {setting.split('×')[0]} | " + " | ".join(
            cell(setting, *c[:4]) for c in SUMMARY_COLUMNS) + " |")
    ref = agg[agg["mode"] == "nonprivate"]
    refs = ", ".join(f"{r['task_set']} {float(r['mean']):.3f}" for _, r in ref.iterrows()
                     if r["metric"] == "accuracy")
    return ("_Mean ± sd over noise seeds (number of seeds in brackets); minilm embeddings, κ = ε; "
            f"non-private accuracy: {refs}. Generated by `python benchmarks/results_privatize.py "
            "render`; every table and plot is in "
            "[docs/privatize-results.md](docs/privatize-results.md)._\n\n" + "\n".join(lines))


def _replace_block(text: str, begin: str, end: str, body: str) -> str:
    if begin not in text or end not in text:
        return text
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def render() -> None:
    """Rewrite the generated part of ``docs/privatize-results.md`` and the PNGs."""
    import csv

    from veil.privatize.eval_report import markdown, plot

    rows: list[dict[str, str]] = []
    sources = sorted(RESULTS.glob("*.csv"))
    for path in sources:
        with open(path, encoding="utf-8", newline="") as fh:
            rows += list(csv.DictReader(fh))
    if not rows:
        raise SystemExit(f"no results in {RESULTS}; run 'collect' first")
    keys = ("task_set", "grid", "setting", "mechanism", "mode", "seed", "metric")
    rows = list({tuple(r[k] for k in keys): r for r in rows}.values())  # a run counts once
    for old in RESULTS.glob("*.png"):
        old.unlink()
    plot(rows, RESULTS)
    body = "\n".join([
        f"_Generated by `python benchmarks/results_privatize.py render` from "
        f"{', '.join(f'`docs/privatize-results/{p.name}`' for p in sources)}._\n",
        _paper_table(rows), markdown(rows, image_prefix="privatize-results/")])
    text = DOC.read_text("utf-8") if DOC.is_file() else f"# Results\n\n{BEGIN}\n{END}\n"
    text = _replace_block(text, BEGIN, END, body)
    cmds = "\n".join(commands(Path("~/veil-eval")))
    text = _replace_block(text, CMD_BEGIN, CMD_END, f"```bash\n{cmds}\n```")
    DOC.write_text(text, "utf-8")
    readme = README.read_text("utf-8")
    README.write_text(_replace_block(readme, SUMMARY_BEGIN, SUMMARY_END, _summary_table(rows)),
                      "utf-8")
    print(f"wrote {DOC} and {len(list(RESULTS.glob('*.png')))} plots")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["run", "collect", "render", "commands"])
    parser.add_argument("stage", nargs="?", choices=list(STAGES))
    parser.add_argument("--out-root", type=Path, default=Path.home() / "veil-eval")
    args = parser.parse_args()
    if args.step == "run":
        if args.stage is None:
            parser.error("run needs a STAGE")
        run_stage(args.stage, args.out_root)
    elif args.step == "collect":
        collect(args.out_root)
    elif args.step == "render":
        render()
    else:
        print("\n".join(commands(Path("~/veil-eval"))))


if __name__ == "__main__":
    main()
