"""The ``OUT.privacy.json`` of a ``veil privatize`` run: what was guaranteed, per token.

Unit of privacy: **one token** (local: each token is randomised on the user's machine).
Each perturbed token satisfies ε-metric-LDP with its group's ε (polar: chordal distance
between unit token embeddings, κ = ε). STAMP Thm 2 composes these over a document:
``Pr[M(c) ∈ S] ≤ exp(Σ_t ε_t · d(w_t, w′_t)) · Pr[M(c′) ∈ S]`` for two documents c, c′
**with the same group pattern** (and the same piece-kind pattern unless decode-any); the
group labels are a public deterministic rule applied to the private text and are not
randomised. ``epsilon`` (and the ledger spend) is the largest per-token ε of the configuration
(unit: token); it is ∞ — no formal guarantee — when a group is released verbatim.
"""

from __future__ import annotations

import math
from typing import Any

from veil.privatize.baselines import TokenMechanism
from veil.privatize.config import GROUP_NAMES, PrivatizeConfig
from veil.privatize.stats import json_eps
from veil.privatize.vocab import Vocabulary

SAME_PATTERN = ("The guarantee compares only documents with the same group pattern: group "
                "labels (sensitive? task-important?) come from a public, deterministic rule "
                "(the PHI detector and the cosine-to-task threshold τ) applied to the private "
                "text and are not randomised, so which tokens are sensitive or important, the "
                "number of tokens, the word-piece pattern and the whitespace layout are not "
                "protected.")

NO_GUARANTEE = "It is ∞: the tokens released verbatim have NO formal guarantee. "


def _group_table(config: PrivatizeConfig, uniform_eps: float | None) -> dict[str, Any]:
    eps = config.group_epsilons()
    if uniform_eps is not None:
        eps = (uniform_eps,) * 4
    return {g: json_eps(e) for g, e in zip(GROUP_NAMES, eps, strict=True)}


def privacy_fields(config: PrivatizeConfig, mech: TokenMechanism, vocab: Vocabulary,
                   summary: dict[str, Any], uniform_eps: float | None,
                   spend: float) -> dict[str, Any]:
    """The fields of the run's PrivacyReport (``mechanism``, ``unit``, ``epsilon``, ...,
    ``statement``, ``extra``) as a JSON-ready dict."""
    eps = config.group_epsilons() if uniform_eps is None else (uniform_eps,) * 4
    none_groups = [g for g, e in zip(GROUP_NAMES, eps, strict=True) if math.isinf(e)]
    mask_groups = [g for g, e in zip(GROUP_NAMES, eps, strict=True) if e == 0]
    n_inf = summary["tokens_verbatim_eps_inf"]
    n_zero = summary["tokens_masked_eps_0"]
    kappa = "κ = ε" if config.kappa_scale == "paper" else "κ = ε/π (reference-code calibration)"
    name = f"{'uniform' if config.uniform else 'stamp'}-{mech.name}"
    unprotected = (f" {n_inf} tokens (groups {', '.join(none_groups)}, ε = ∞) were released "
                   "verbatim with NO protection." if n_inf else "")
    masked = (f" {n_zero} tokens (groups {', '.join(mask_groups)}, ε = 0) were masked "
              f"('{vocab.mask_text}'); nothing about them is released beyond their position."
              if n_zero else "")
    statement = (
        f"Each token was replaced on this machine by a randomised token ({mech.name} "
        f"mechanism, {mech.guarantee.split(' (')[0]}; distance: {mech.metric}). Per-token ε "
        f"by group: {', '.join(f'{g}={_fmt(e)}' for g, e in zip(GROUP_NAMES, eps, strict=True))}"
        f"; the release's per-token ε (recorded in the ledger) is the largest, {_fmt(spend)}. "
        f"{NO_GUARANTEE if math.isinf(spend) else ''}For a "
        "whole document the loss is at most Σ_t ε_t·d(w_t, w′_t) (STAMP Thm 2), i.e. at "
        f"most {mech.worst_case_factor} per token summed over its tokens. {SAME_PATTERN}"
        f"{unprotected}{masked} Text already masked in the input (e.g. XXXX) was copied as "
        "is. ε is per unit of embedding distance and budgets in the hundreds give weak "
        "worst-case guarantees; they do not transfer between embedding models.")
    extra = {
        "privacy_notion": "within-group token-level metric local DP (STAMP Def. 3)",
        "per_group_epsilon": _group_table(config, uniform_eps),
        "configured_group_epsilon": _group_table(config, None),
        "budgets": None if config.group_eps is not None else list(config.budgets),
        "base_epsilon": None if config.group_eps is not None else config.epsilon,
        "uniform": config.uniform,
        "uniform_scope": config.uniform_scope if config.uniform else None,
        "uniform_epsilon": json_eps(uniform_eps),
        "tau": config.tau,
        "metric": mech.metric,
        "guarantee": mech.guarantee,
        "per_token_worst_case_pure_ldp": mech.worst_case_factor,
        "kappa_calibration": kappa if mech.name == "polar" else None,
        "embeddings": config.embeddings,
        "embedding_dim": vocab.dim,
        "vocabulary_size": vocab.size,
        "decode": "any piece" if config.decode_any else "same piece kind (word-initial / "
                  "continuation)",
        "context_level_bound": {
            "formula": "Pr[M(c)∈S] ≤ exp(Σ_t ε_t·d(w_t, w′_t))·Pr[M(c′)∈S] for c, c′ with "
                       "the same group pattern",
            "max_sum_eps_per_document": summary["eps_sum_max_per_document"],
            "mean_sum_eps_per_document": summary["eps_sum_mean_per_document"],
        },
        "no_protection": {"tokens": n_inf, "groups": none_groups,
                          "note": "ε = ∞: released verbatim"},
        "masked": {"tokens": n_zero, "groups": mask_groups, "mask_text": vocab.mask_text},
        "same_group_pattern_only": SAME_PATTERN,
        "ledger_spend": {"epsilon": json_eps(spend), "unit": "token",
                         "rule": "largest group ε of the configuration (∞ if a group is "
                                 "kept verbatim; uniform: largest finite group ε): an upper "
                                 "bound on every per-token ε (local DP: each token is "
                                 "randomised once)"},
        "summary": summary,
    }
    return {"mechanism": name, "unit": "token", "epsilon": json_eps(spend), "delta": 0.0,
            "accountant": "none (local per-token mechanism; STAMP Thm 2 composition)",
            "composition": [{"part": g, "epsilon": json_eps(e), "unit": "token"}
                            for g, e in zip(GROUP_NAMES, eps, strict=True)],
            "statement": statement, "extra": extra}


def _fmt(x: float) -> str:
    return "∞" if math.isinf(x) else f"{x:g}"
