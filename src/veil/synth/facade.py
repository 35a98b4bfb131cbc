"""``synthesize(...)``: the one-call entry of the synth pipeline (simulation on one machine).

Reads the per-site files of a folder, checks columns and budgets up front
(bad input fails before any site releases anything), assigns roles, and runs
the Flower app in the simulation engine. The sites' noise, the per-site
accounting and the outputs are the Flower app's business
(:mod:`veil.synth.server`, :mod:`veil.synth.site`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veil import progress
from veil.errors import BadInput
from veil.synth.codes import record_codes, vocabulary
from veil.synth.config import SynthConfig
from veil.synth.simulation import Engine
from veil.synth.site import SiteSpec

SITE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".csv.gz", ".jsonl.gz")


def _natural(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def discover_sites(sites_dir: Path) -> list[Path]:
    """The site files in ``sites_dir`` (csv/tsv/jsonl/parquet), in natural name order."""
    folder = Path(sites_dir)
    if not folder.is_dir():
        raise BadInput("not a folder of site files", path=folder)
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
             and p.name.lower().endswith(SITE_SUFFIXES)]
    if not files:
        raise BadInput("no site files (.csv, .tsv, .jsonl, .parquet) in the folder", path=folder)
    return sorted(files, key=_natural)


def site_name(path: Path) -> str:
    """``site_3.csv`` -> ``site_3``."""
    name = path.name
    for suffix in sorted(SITE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


@dataclass(frozen=True)
class SynthSummary:
    """What ``veil synth`` prints: where the outputs are and the headline figures."""

    out: Path
    n_synthetic: int
    per_site_epsilon: dict[str, float]
    failed_sites: dict[str, str]
    refined: bool
    wall_time_s: dict[str, float]


def assign_roles(names: Sequence[str], strong: int, strong_sites: Sequence[str] | None) -> dict[
        str, str]:
    """``{site: "strong"|"weak"}``: the named sites, or the first ``strong`` in name order."""
    if strong_sites:
        unknown = sorted(set(strong_sites) - set(names))
        if unknown:
            raise BadInput(f"--strong-sites names unknown sites: {', '.join(unknown)}")
        chosen = set(strong_sites)
    else:
        if not 0 <= strong <= len(names):
            raise BadInput(f"--strong must be between 0 and the number of sites ({len(names)})")
        chosen = set(names[:strong])
    return {n: ("strong" if n in chosen else "weak") for n in names}


def prepare(sites_dir: Path, cfg: SynthConfig) -> tuple[SynthConfig, list[tuple[str, Path]],
                                                        list[str]]:
    """Read every site file once: check columns, δ < 1/N, and collect the code vocabulary.

    Returns:
        ``(config with its vocabulary, [(site name, file)], notes for the report)``.
    """
    from veil.io import read_corpus

    files = discover_sites(sites_dir)
    notes: list[str] = []
    per_site = []
    named = []
    for path in files:
        corpus = read_corpus(path, text_cols=cfg.text_col, extra_cols=list(cfg.code_cols))
        if cfg.delta >= 1.0 / len(corpus):
            raise BadInput(f"--delta {cfg.delta:g} is not below 1/N for this site "
                           f"({len(corpus)} records)", path=path)
        codes = record_codes(corpus.extra, cfg.code_cols, cfg.code_sep)
        per_site.append(codes)
        named.append((site_name(path), path))
    if len({n for n, _ in named}) != len(named):
        raise BadInput("two site files have the same name", path=sites_dir)
    if not cfg.codes:
        cfg = cfg.with_codes(vocabulary(per_site))
        notes.append(f"the {len(cfg.codes)} control codes were read from the site files "
                     "(simulation on one machine); in a real federation declare them public "
                     "in the run config")
    missing = {name: sum(1 for c in cfg.codes if c not in set(codes))
               for (name, _), codes in zip(named, per_site, strict=True)}
    for name, n_missing in missing.items():
        if n_missing:  # the operator's console only: which codes a site lacks is private
            progress.info(f"{name}: no records for {n_missing} of {len(cfg.codes)} codes "
                          "(their counts are zero before noise)")
    return cfg, named, notes


def synthesize(sites_dir: str | Path, out: str | Path, cfg: SynthConfig, *, strong: int = 1,
               strong_sites: Sequence[str] | None = None, engine: Engine = "flower",
               ledger: str | Path | None = None, fail_at: Mapping[str, str] | None = None,
               max_epsilon: Mapping[str, float] | None = None,
               capture_dir: str | Path | None = None) -> SynthSummary:
    """Federated DP synthesis across the site files of ``sites_dir`` (simulated sites).

    Args:
        sites_dir: folder with one corpus file per site (e.g. from ``veil split``).
        out: output folder (written atomically).
        cfg: run settings; ``cfg.epsilon`` is the total ε **per record at each site**.
        strong: number of strong sites (the first ones in name order).
        strong_sites: explicit strong site names (overrides ``strong``).
        engine: ``"flower"`` (Flower simulation runtime) or ``"inprocess"``.
        ledger: the sites' privacy ledger file (default ``$VEIL_HOME/ledger.db``).
        fail_at: test hook ``{site: phase}`` making a site fail on that phase.
        max_epsilon: per-site cap on ε (a site refuses a plan above it).
        capture_dir: save every message there (tests).

    Returns:
        A :class:`SynthSummary`.

    Raises:
        BadInput: unknown columns, δ not below 1/N, ε too small, too few candidates for K.
    """
    from veil.synth.server import check_plan
    from veil.synth.simulation import simulate

    cfg, named, notes = prepare(Path(sites_dir), cfg)
    roles = assign_roles([n for n, _ in named], strong, strong_sites)
    if cfg.strong_only and "strong" not in roles.values():
        raise BadInput("--strong-only needs at least one strong site")
    check_plan(cfg)
    fails, caps = dict(fail_at or {}), dict(max_epsilon or {})
    specs = [SiteSpec(name, str(path.resolve()), roles[name],
                      str(ledger) if ledger is not None else None, caps.get(name),
                      fails.get(name)) for name, path in named]
    out = Path(out)
    progress.info(f"synth: {len(specs)} sites ({sum(r == 'strong' for r in roles.values())} "
                  f"strong), {len(cfg.codes)} codes, epsilon {cfg.epsilon:g} per record per site")
    simulate(cfg, specs, out, engine=engine, notes=notes,
             capture_dir=Path(capture_dir) if capture_dir else None,
             extra={"roles": roles, "engine": engine})
    m = json.loads((out / "metrics.json").read_text("utf-8"))
    return SynthSummary(
        out=out, n_synthetic=int(m["n_synthetic"]),
        per_site_epsilon={k: float(v["epsilon"]) for k, v in m["sites"].items()},
        failed_sites={k: str(v["failed_at"]) for k, v in m["sites"].items() if v["failed_at"]},
        refined=bool(m["refined"]), wall_time_s=dict(m["phase_wall_time_s"]))
