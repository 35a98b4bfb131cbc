"""CLI commands of the synth pipeline: ``veil split``, ``veil synth``, ``veil synth-eval``.

Thin: parse options, build a :class:`~veil.synth.config.SynthConfig`, call the
facade, print a summary. Nothing heavy is imported at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def split(
    data: Annotated[Path, typer.Argument(help="Corpus file (.csv, .tsv, .jsonl, .parquet).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for site_<k>.csv files.")],
    text_col: Annotated[str, typer.Option(help="Text column (checked, kept).")] = "text",
    label_col: Annotated[str, typer.Option(help="Label column (drives the Dirichlet skew).")
                         ] = "label",
    sites: Annotated[int, typer.Option(min=1, help="Number of sites.")] = 10,
    iid: Annotated[bool, typer.Option("--iid", help="Deal records evenly at random.")] = False,
    dirichlet: Annotated[float | None, typer.Option(
        help="Dirichlet concentration of the label skew (e.g. 0.3; smaller = more skew).")
    ] = None,
    label_sep: Annotated[str | None, typer.Option(
        help="Multi-label cells: split on this and skew by the first label.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the assignment.")] = 0,
    quiet: Annotated[bool, typer.Option(help="No summary.")] = False,
) -> None:
    """Split a corpus into per-site files (IID or Dirichlet label skew) for federated runs.

    A simulation device, not a release: no privacy budget is spent.
    """
    from veil.errors import BadInput
    from veil.io import read_corpus, read_records
    from veil.privacy.rng import make_rng
    from veil.progress import info, set_quiet
    from veil.splits import split_sites, write_site_files

    set_quiet(quiet)
    if iid == (dirichlet is not None):
        raise BadInput("give exactly one of --iid or --dirichlet ALPHA")
    corpus = read_corpus(data, text_cols=text_col, label_col=label_col, label_sep=label_sep,
                         require_labels=True)
    rows = read_records(data)
    if corpus.skipped_empty:  # keep rows and labels aligned: drop the empty-text rows too
        rows = [r for r in rows if str(r.get(text_col) or "").strip()]
    if len(rows) != len(corpus):
        raise BadInput("could not align rows with their labels", path=data)
    if sites > len(rows):
        raise BadInput(f"--sites {sites} exceeds the number of records ({len(rows)})")
    labels = [lab[0] for lab in (corpus.labels or [])]
    try:
        assignment = split_sites(labels, sites, iid=iid, alpha=dirichlet, rng=make_rng(seed))
    except ValueError as err:
        raise BadInput(str(err)) from None
    paths = write_site_files(rows, assignment, out, "csv", columns=list(rows[0].keys()),
                             n_sites=sites)
    sizes = [int((assignment == k).sum()) for k in range(sites)]
    info(f"{len(rows)} records -> {len(paths)} sites in {out} (sizes {min(sizes)}..{max(sizes)})")


def synth(
    out: Annotated[Path, typer.Option("--out", help="Output folder (written atomically).")],
    sites: Annotated[Path | None, typer.Option(
        "--sites", help="Folder with one corpus file per site (simulation).")] = None,
    text_col: Annotated[str, typer.Option(help="Text column.")] = "text",
    code_cols: Annotated[str, typer.Option(help="Control-code columns, comma-separated.")
                         ] = "label",
    code_sep: Annotated[str | None, typer.Option(
        help="Multi-valued code cells: use the first value after splitting on this.")] = None,
    strong: Annotated[int, typer.Option(help="Number of strong sites (first in name order).")
                      ] = 1,
    strong_sites: Annotated[str | None, typer.Option(
        help="Strong site names, comma-separated (overrides --strong).")] = None,
    generator: Annotated[str, typer.Option(help="Causal LM: smollm2-135m, tiny-llama or a path.")
                         ] = "smollm2-135m",
    embedder: Annotated[str, typer.Option(help="Sentence encoder for voting.")] = "minilm",
    epsilon: Annotated[str, typer.Option(
        help="TOTAL ε per record at each site over all its phases ('inf': no noise).")] = "8",
    delta: Annotated[float, typer.Option(help="δ of each site's guarantee (< 1/N).")] = 1e-5,
    rounds: Annotated[int, typer.Option(help="Federated fine-tuning rounds.")] = 3,
    local_epochs: Annotated[float, typer.Option(help="Expected local epochs per round.")] = 1.0,
    sample_rate: Annotated[float, typer.Option(help="DP-SGD Poisson sampling rate q (public).")
                           ] = 0.1,
    samples: Annotated[int, typer.Option(help="Synthetic records to release.")] = 2000,
    k: Annotated[int, typer.Option("--k", help="Nearest candidates each record votes for.")] = 3,
    threshold: Annotated[float, typer.Option(help="Vote threshold H.")] = 0.0,
    refine: Annotated[bool, typer.Option("--refine/--no-refine", help="DP voting (phase 4).")
                      ] = True,
    strong_only: Annotated[bool, typer.Option(help="Weak sites take no part (baseline).")
                           ] = False,
    strong_vote: Annotated[bool, typer.Option(help="Strong sites vote too.")] = False,
    selection: Annotated[str, typer.Option(help="sample (∝ votes) or rank.")] = "sample",
    candidates_factor: Annotated[float, typer.Option(help="Candidates per released sample.")
                                 ] = 2.0,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 0.95,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens per synthetic text.")] = 64,
    lr: Annotated[float, typer.Option(help="LoRA learning rate.")] = 2e-3,
    max_length: Annotated[int, typer.Option(help="Training tokens per record.")] = 128,
    accountant: Annotated[str, typer.Option(help="prv or rdp (compositions with DP-SGD).")
                          ] = "prv",
    engine: Annotated[str, typer.Option(help="flower (simulation runtime) or inprocess.")
                      ] = "flower",
    ledger: Annotated[Path | None, typer.Option(help="The sites' ledger file.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    secure: Annotated[bool, typer.Option(help="Noise seeds from the OS entropy pool.")] = False,
    codes: Annotated[str | None, typer.Option(
        help="Public code vocabulary: comma-separated values (one code column) or a JSON "
             "file with a list of value lists. Default: read from the site files.")] = None,
    export_flower_app: Annotated[Path | None, typer.Option(
        help="Deployment: write a Flower app folder for `flwr run` and exit.")] = None,
    num_sites: Annotated[int, typer.Option(
        help="Deployment: SuperNodes the server waits for.")] = 1,
    fail_at: Annotated[list[str] | None, typer.Option(
        hidden=True, help="Test hook SITE=PHASE: make a site fail.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    """Federated DP synthetic text: strong sites DP-fine-tune, all profile, weak sites vote.

    Runs the Flower app in Flower's simulation engine, one virtual SuperNode per
    site file. ε is per record at each site; see OUT/privacy/<site>.json.
    """
    from veil.errors import BadInput
    from veil.io import parse_columns
    from veil.progress import console, set_quiet
    from veil.synth.config import SynthConfig, parse_epsilon
    from veil.synth.facade import synthesize

    set_quiet(quiet)
    if engine not in ("flower", "inprocess"):
        raise BadInput("--engine must be flower or inprocess")
    cfg = SynthConfig(
        text_col=text_col, code_cols=tuple(parse_columns(code_cols)), code_sep=code_sep,
        generator=generator, embedder=embedder, epsilon=parse_epsilon(epsilon), delta=delta,
        accountant=accountant, rounds=rounds, local_epochs=local_epochs,  # type: ignore[arg-type]
        sample_rate=sample_rate, lr=lr, max_length=max_length, samples=samples, k=k,
        threshold=threshold, refine=refine, strong_only=strong_only, strong_vote=strong_vote,
        candidates_factor=candidates_factor, selection=selection,  # type: ignore[arg-type]
        temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
        secure=secure)
    if codes:
        cfg = cfg.with_codes(_read_codes(codes, len(cfg.code_cols)))
    if export_flower_app is not None:
        _export(export_flower_app, cfg, sites, out, num_sites)
        return
    if sites is None:
        raise BadInput("--sites is required (or --export-flower-app for deployment)")
    fails = {}
    for item in fail_at or []:
        site, _, phase = item.partition("=")
        fails[site] = phase
    summary = synthesize(sites, out, cfg, strong=strong,
                         strong_sites=parse_columns(strong_sites) if strong_sites else None,
                         engine=engine, ledger=ledger, fail_at=fails)  # type: ignore[arg-type]
    if not quiet:
        eps = ", ".join(f"{s} {e:.3g}" for s, e in summary.per_site_epsilon.items())
        console.print(f"{summary.n_synthetic} synthetic records -> {out / 'synthetic.jsonl'}")
        console.print(f"epsilon per record by site: {eps}")
        for site, phase in summary.failed_sites.items():
            console.print(f"site {site} failed at {phase}; the run finished without it")


def _read_codes(spec: str, n_cols: int) -> list[tuple[str, ...]]:
    import json

    from veil.errors import BadInput

    path = Path(spec)
    if path.is_file():
        try:
            data = json.loads(path.read_text("utf-8"))
            codes = [tuple(str(v) for v in (c if isinstance(c, list) else [c])) for c in data]
        except (ValueError, TypeError):
            raise BadInput("not a JSON list of code values", path=path) from None
    else:
        codes = [(v.strip(),) for v in spec.split(",") if v.strip()]
    if not codes or any(len(c) != n_cols for c in codes):
        raise BadInput(f"--codes needs {n_cols} value(s) per code")
    return sorted(set(codes))


def _export(folder: Path, cfg: object, sites: Path | None, out: Path, num_sites: int) -> None:
    from dataclasses import replace

    from veil.errors import BadInput
    from veil.progress import console
    from veil.synth.config import SynthConfig
    from veil.synth.facade import prepare
    from veil.synth.flower_project import export_flower_app
    from veil.synth.server import check_plan

    assert isinstance(cfg, SynthConfig)
    if sites is not None:
        cfg, named, _ = prepare(sites, cfg)
        num_sites = max(num_sites, len(named))
    if not cfg.codes:
        raise BadInput("deployment needs the public code vocabulary: --codes (or --sites)")
    cfg = replace(cfg, min_sites=num_sites)
    check_plan(cfg)
    path = export_flower_app(folder, cfg, out)
    console.print(f"Flower app written to {path.parent}; start it with "
                  f"`flwr run {path.parent} <connection>` (see docs/synth.md)")


def synth_eval(
    synthetic: Annotated[Path, typer.Argument(help="Synthetic records (OUT/synthetic.jsonl).")],
    real: Annotated[Path, typer.Argument(help="Held-out real corpus file.")],
    out: Annotated[Path, typer.Option("--out", help="metrics.json to write.")],
    text_col: Annotated[str, typer.Option(help="Text column of the real file.")] = "text",
    label_col: Annotated[str, typer.Option(help="Label column of the real file.")] = "label",
    synth_label_col: Annotated[str | None, typer.Option(
        help="Label field of the synthetic file (default: --label-col).")] = None,
    label_sep: Annotated[str | None, typer.Option(
        help="Multi-label real cells: use the first label.")] = None,
    embedder: Annotated[str, typer.Option(help="Sentence encoder for the embeddings.")
                        ] = "minilm",
    k: Annotated[int, typer.Option("--k", help="k of the k-NN precision/recall.")] = 3,
    seed: Annotated[int, typer.Option(
        help="Seed of the downstream classifier and of MAUVE's k-means.")] = 0,
    quiet: Annotated[bool, typer.Option(help="No summary.")] = False,
) -> None:
    """Fréchet distance, k-NN precision/recall, MAUVE and downstream accuracy vs held-out data."""
    from veil.artifacts import write_json
    from veil.progress import console, set_quiet
    from veil.synth.evaluate import evaluate_files

    set_quiet(quiet)
    result = evaluate_files(synthetic, real, text_col=text_col, label_col=label_col,
                            synth_label_col=synth_label_col, label_sep=label_sep,
                            embedder=embedder, k=k, seed=seed)
    write_json(out, result.to_dict())
    if not quiet:
        mauve = "n/a" if result.mauve is None else f"{result.mauve:.3f}"
        console.print(f"Frechet {result.frechet:.4f}  precision {result.precision:.3f}  "
                      f"recall {result.recall:.3f}  MAUVE {mauve}  "
                      f"accuracy {result.accuracy:.3f}  macro-F1 {result.macro_f1:.3f}  -> {out}")
        if result.mauve_note:
            console.print(result.mauve_note)


def register(app: typer.Typer) -> None:
    """Attach the synth commands to ``app``."""
    app.command()(split)
    app.command()(synth)
    app.command("synth-eval")(synth_eval)
