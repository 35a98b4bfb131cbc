"""Assign records to sites: IID or Dirichlet label skew (non-IID federated splits).

The Dirichlet recipe is the usual label-skew benchmark for federated learning:
for every class, draw site proportions ``p ~ Dir(alpha * 1_K)`` and deal that
class's (shuffled) records to the ``K`` sites in those proportions. Small
``alpha`` (0.1) gives sites dominated by a few classes; large ``alpha`` (100)
approaches an IID split. No privacy guarantee is involved here: splitting is
a simulation device, not a release.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from veil.artifacts import atomic_write_text

SITE_FORMATS = ("csv", "jsonl")


def split_sites(
    labels: Sequence[str],
    n_sites: int,
    *,
    iid: bool = False,
    alpha: float | None = None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Site index (``0 .. n_sites-1``) for every record.

    Args:
        labels: one class label per record (e.g. the primary finding); only
            used by the Dirichlet split.
        n_sites: number of sites, ``1 <= n_sites <= len(labels)``.
        iid: deal a random permutation evenly (site sizes differ by at most 1);
            ``alpha`` is then ignored.
        alpha: Dirichlet concentration (> 0) for the label-skew split; required
            when ``iid`` is False. Smaller means more skewed sites.
        rng: source of all randomness (same generator state, same assignment).

    Returns:
        ``np.ndarray`` of int64, shape ``(len(labels),)``. Every site receives at
        least one record: after dealing, records are moved one at a time from
        the currently largest site to any empty one.

    Raises:
        ValueError: ``n_sites < 1``, ``n_sites > len(labels)``, or a missing or
            non-positive ``alpha`` for a Dirichlet split.
    """
    n = len(labels)
    if int(n_sites) != n_sites or n_sites < 1:
        raise ValueError(f"n_sites must be a positive integer, got {n_sites}")
    n_sites = int(n_sites)
    if n_sites > n:
        raise ValueError(f"n_sites ({n_sites}) exceeds the number of records ({n})")
    if iid:
        assignment = np.empty(n, dtype=np.int64)
        assignment[rng.permutation(n)] = np.arange(n, dtype=np.int64) % n_sites
        return assignment
    if alpha is None or not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0 for a Dirichlet split, got {alpha}")

    assignment = np.full(n, -1, dtype=np.int64)
    label_arr = np.asarray([str(x) for x in labels])
    for cls in sorted(set(label_arr.tolist())):
        idx = np.flatnonzero(label_arr == cls)
        idx = idx[rng.permutation(idx.size)]
        props = rng.dirichlet(np.full(n_sites, float(alpha)))
        cuts = np.floor(np.cumsum(props)[:-1] * idx.size).astype(np.int64)
        for site, part in enumerate(np.split(idx, cuts)):
            assignment[part] = site
    _fill_empty_sites(assignment, n_sites, rng)
    return assignment


def _fill_empty_sites(assignment: np.ndarray, n_sites: int, rng: np.random.Generator) -> None:
    """Move random records from the largest site into empty sites, in place."""
    counts = np.bincount(assignment, minlength=n_sites)
    for site in np.flatnonzero(counts == 0):
        largest = int(np.argmax(counts))
        members = np.flatnonzero(assignment == largest)
        moved = int(members[rng.integers(members.size)])
        assignment[moved] = site
        counts[largest] -= 1
        counts[site] += 1


def _cell(value: Any) -> str:
    """A CSV cell: lists joined by ';', None as empty."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    return str(value)


def format_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], fmt: str) -> str:
    """Serialize ``rows`` as CSV (header + ``columns``) or JSON Lines (all keys).

    CSV uses ``\\n`` line endings and minimal quoting; list values are joined
    by ``;``. JSON Lines keeps lists as lists. Output is deterministic.

    Raises:
        ValueError: ``fmt`` not in ``SITE_FORMATS``.
    """
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(col)) for col in columns])
        return buf.getvalue()
    if fmt == "jsonl":
        return "".join(json.dumps(dict(row), ensure_ascii=False) + "\n" for row in rows)
    raise ValueError(f"unknown format {fmt!r}; expected one of {SITE_FORMATS}")


def write_site_files(
    corpus_rows: Sequence[Mapping[str, Any]],
    assignment: np.ndarray | Sequence[int],
    out_dir: str | Path,
    fmt: str = "csv",
    *,
    columns: Sequence[str] | None = None,
    n_sites: int | None = None,
) -> list[Path]:
    """Write ``out_dir/site_<k>.<fmt>`` for every site, each file atomically.

    Args:
        corpus_rows: the records, in the order of ``assignment``.
        assignment: site index per record (from :func:`split_sites`).
        out_dir: folder to write into (created if missing).
        fmt: ``"csv"`` or ``"jsonl"``.
        columns: CSV columns; default: the keys of the first row.
        n_sites: number of site files; default ``max(assignment) + 1``. Sites
            without records get a header-only (CSV) or empty (JSONL) file.

    Returns:
        The written paths, ordered by site index.

    Raises:
        ValueError: unknown ``fmt``, or ``assignment`` length differs from the rows.
    """
    if fmt not in SITE_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {SITE_FORMATS}")
    assign = np.asarray(assignment, dtype=np.int64)
    if assign.shape != (len(corpus_rows),):
        raise ValueError(
            f"assignment has {assign.size} entries for {len(corpus_rows)} records"
        )
    if columns is None:
        columns = list(corpus_rows[0].keys()) if corpus_rows else []
    k_sites = int(n_sites) if n_sites is not None else (int(assign.max()) + 1 if assign.size else 0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for site in range(k_sites):
        rows = [corpus_rows[int(i)] for i in np.flatnonzero(assign == site)]
        path = out / f"site_{site}.{fmt}"
        atomic_write_text(path, format_rows(rows, columns, fmt))
        paths.append(path)
    return paths
