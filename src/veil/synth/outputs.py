"""The artifact folder of a synth run, written atomically by the server.

``OUT/synthetic.jsonl`` (id, text, control_code, one field per code column),
``OUT/privacy/<site>.json`` (each site's PrivacyReport), ``OUT/privacy.json``
(the summary: the largest per-site ε), ``OUT/metrics.json`` (per-phase wall
time, bytes per site, sizes), ``OUT/report.md`` and ``OUT/run.json``. Every
site recorded its spend in its own ledger before its first release, so all
spends precede the rename that makes the output visible.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from veil.artifacts import atomic_output, run_record, write_json
from veil.privacy.report import PrivacyReport
from veil.synth.budget import sgd_steps, site_report
from veil.synth.server import RunResult


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return "∞" if math.isinf(x) else f"{x:.3g}"


def _json_eps(x: float) -> float | str:
    return "inf" if math.isinf(x) else x


def site_reports(res: RunResult) -> dict[str, PrivacyReport]:
    """The PrivacyReport of every site that released anything."""
    per_round, _ = sgd_steps(res.cfg)
    out = {}
    for s in res.sites:
        plan = s.released_plan(per_round)
        if plan is None:
            continue
        out[s.name] = site_report(s.name, plan, s.completed, clipping_norm=res.cfg.max_grad_norm,
                                  target_epsilon=res.cfg.epsilon, failed_at=s.failed_at)
    return out


def metrics(res: RunResult, reports: dict[str, PrivacyReport]) -> dict[str, Any]:
    """The content of ``metrics.json``."""
    texts = [res.candidates[i] for i in res.chosen]
    return {
        "phase_wall_time_s": res.timings,
        "bytes_per_site": res.traffic.to_dict(),
        "n_synthetic": len(res.chosen),
        "n_candidates": len(res.candidates),
        "n_empty_texts": sum(1 for t in texts if not t.strip()),
        "n_distinct_texts": len(set(texts)),
        "mean_words": (sum(len(t.split()) for t in texts) / len(texts)) if texts else 0.0,
        "refined": res.refined,
        "trained_rounds": res.trained_rounds,
        "quotas": {res.book.prefix(j).strip(): q for j, q in enumerate(res.quotas)},
        "noisy_profile_proportions": (res.profile.proportions.tolist() if res.profile else []),
        "zero_histogram_codes": [res.book.prefix(j).strip() for j in res.zero_histogram_codes],
        "sites": {s.name: {"role": s.role, "phases_planned": list(s.plan.phases) if s.plan else [],
                           "phases_released": s.completed, "failed_at": s.failed_at,
                           "epsilon": _json_eps(reports[s.name].epsilon
                                                if s.name in reports else 0.0)}
                  for s in res.sites},
    }


def report_md(res: RunResult, reports: dict[str, PrivacyReport], m: dict[str, Any]) -> str:
    """The human summary ``report.md`` (no record text, no exact count)."""
    cfg = res.cfg
    lines = [
        "# veil synth: federated DP synthetic text", "",
        f"- released: **{m['n_synthetic']}** synthetic records from {m['n_candidates']} "
        f"candidates ({'refined by DP voting' if res.refined else 'no refinement'})",
        f"- generator `{cfg.generator}`, embedder `{cfg.embedder}`, {res.trained_rounds} of "
        f"{cfg.rounds} fine-tuning round(s), K = {cfg.k}, threshold H = {cfg.threshold:g}",
        f"- privacy: target ε = {_fmt(cfg.epsilon)} per record **at each site**, "
        f"δ = {cfg.delta:g}; each site's ε composes only the phases it took part in",
        "", "## Sites", "",
        "| site | role | phases planned | phases released | ε (released) | status |",
        "|---|---|---|---|---|---|",
    ]
    for s in res.sites:
        rep = reports.get(s.name)
        status = "ok" if s.failed_at is None else f"FAILED at {s.failed_at}: {s.reason}"
        planned = (", ".join(s.plan.phases) or "none") if s.plan else "-"
        lines.append(f"| {s.name} | {s.role} | {planned} | {', '.join(s.completed) or '-'} | "
                     f"{_fmt(rep.epsilon) if rep else '-'} | {status} |")
    lines += ["", "## Phases", "", "| phase | wall time (s) |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in res.timings.items()]
    lines += ["", "## Bytes per site", "", "| site | sent by site | received by site |",
              "|---|---|---|"]
    for site, row in m["bytes_per_site"].items():
        lines.append(f"| {site} | {row['sent_by_site_total']} | {row['received_by_site_total']} |")
    lines += ["", "## Code mix (from the noisy profile)", "", "| code | share | released |",
              "|---|---|---|"]
    props = m["noisy_profile_proportions"]
    for j, q in enumerate(res.quotas):
        share = f"{props[j]:.3f}" if j < len(props) else "-"
        lines.append(f"| {res.book.prefix(j).strip()} | {share} | {q} |")
    if res.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in res.notes]
    lines += ["", "Only DP-trained adapters, noisy counts and noisy votes left the sites; "
              "see `privacy/<site>.json` for each site's guarantee.", ""]
    return "\n".join(lines)


def write_outputs(out: Path, res: RunResult, extra: dict[str, Any]) -> None:
    """Write the whole artifact folder atomically (temp folder renamed into place)."""
    reports = site_reports(res)
    m = metrics(res, reports)
    records = res.records()
    with atomic_output(Path(out)) as tmp:
        (tmp / "privacy").mkdir(parents=True)
        (tmp / "synthetic.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
        for name, rep in reports.items():
            rep.write(tmp / "privacy" / f"{name}.json")
        if reports:
            worst = max(reports.values(), key=lambda r: r.epsilon)
            summary = PrivacyReport.build(
                worst.mechanism, "record", worst.epsilon, worst.delta, worst.accountant,
                statement=("Per-site guarantees: " + "; ".join(
                    f"{n}: ε = {_fmt(r.epsilon)}" for n, r in sorted(reports.items()))
                    + ". Each holds for the records of that site; this file repeats the largest. "
                    + worst.statement),
                extra={"per_site_epsilon": {n: _json_eps(r.epsilon) for n, r in reports.items()}})
            summary.write(tmp / "privacy.json")
        write_json(tmp / "metrics.json", m)
        (tmp / "report.md").write_text(report_md(res, reports, m), "utf-8")
        cfg = json.loads(res.cfg.to_json())
        cfg["codes"] = len(res.cfg.codes)  # the vocabulary is in the records; keep run.json short
        write_json(tmp / "run.json", {**run_record(cfg, res.cfg.seed, res.timings), **extra})
