"""Persistent privacy-budget ledger (SQLite), keyed by a fingerprint of the dataset.

Every release computed from a dataset spends some of its privacy budget: ε per
unit of privacy (token, record or site), summed over releases by basic
composition (ε and δ add; a safe upper bound for any mix of mechanisms). A
dataset may carry a total budget ε; a release that would take the sum past it
is refused with :class:`veil.errors.BudgetRefused` (exit code 3).

Budgets are spent *before* release: :func:`record_release` writes the spend,
lets the caller move the output into place, then marks the spend released. A
crash in between leaves the spend recorded (status ``'spent'``), so the ledger
can over-count, never under-count. Spends run inside one ``BEGIN IMMEDIATE``
transaction that re-reads the total, so two processes cannot both squeeze under
the limit. The ledger stores fingerprints and labels only, never data.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from veil._env import veil_home
from veil.errors import BadInput, BudgetRefused
from veil.privacy.report import UNITS

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    fingerprint TEXT PRIMARY KEY,
    label TEXT,
    budget_epsilon REAL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS spends (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL REFERENCES datasets(fingerprint),
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    release TEXT NOT NULL,
    unit TEXT NOT NULL,
    accountant TEXT,
    mechanism TEXT,
    note TEXT,
    created TEXT NOT NULL,
    released TEXT,
    status TEXT NOT NULL CHECK (status IN ('spent', 'released'))
);
CREATE INDEX IF NOT EXISTS spends_by_dataset ON spends (fingerprint);
"""
_TOLERANCE = 1e-9  # relative float slack on the budget comparison
_HEX64 = re.compile(r"[0-9a-f]{64}")


def fingerprint_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks (any size of file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_texts(texts: Iterable[str]) -> str:
    """SHA-256 (hex) of a sequence of texts; order and boundaries matter."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class LedgerRow:
    """One dataset in the ledger, as ``veil ledger show`` prints it.

    Attributes:
        fingerprint: SHA-256 of the dataset.
        label: a name or path given by the user (never content), or None.
        budget_epsilon: total ε allowed, or None for no limit.
        spent_epsilon: ε spent so far (sum over spends, including unreleased ones).
        spent_delta: δ spent so far (sum).
        n_spends: number of recorded spends.
        n_unreleased: spends whose release was never confirmed (e.g. a crash).
        remaining_epsilon: budget minus spent, or None for no limit.
        units: the units of privacy the spends were made in.
        last_spend: time of the latest spend (ISO-8601 UTC), or None.
    """

    fingerprint: str
    label: str | None
    budget_epsilon: float | None
    spent_epsilon: float
    spent_delta: float
    n_spends: int
    n_unreleased: int
    remaining_epsilon: float | None
    units: tuple[str, ...]
    last_spend: str | None


@dataclass(frozen=True)
class Spend:
    """One recorded spend (a row of the ``spends`` table)."""

    id: int
    fingerprint: str
    epsilon: float
    delta: float
    release: str
    unit: str
    accountant: str | None
    mechanism: str | None
    note: str | None
    created: str
    released: str | None
    status: str


class Ledger:
    """The budget ledger at ``path`` (default ``veil_home()/ledger.db``).

    Each call opens its own connection, so one object may be used from threads
    and two processes may write the same file at once (WAL mode, busy timeout).
    ``dataset`` arguments are fingerprints (:func:`fingerprint_file`,
    :func:`fingerprint_texts`); :meth:`resolve` turns a path, label or unique
    fingerprint prefix into one.
    """

    def __init__(self, path: str | Path | None = None, *, timeout_s: float = 60.0) -> None:
        self.path = Path(path) if path is not None else veil_home() / "ledger.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        with self._connect() as con:
            self._enable_wal(con)
            con.execute("BEGIN IMMEDIATE")
            for statement in filter(str.strip, _SCHEMA.split(";")):
                con.execute(statement)
            con.execute("COMMIT")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            con.execute("PRAGMA synchronous = FULL")
            con.execute("PRAGMA foreign_keys = ON")
            yield con
        finally:
            con.close()

    def _enable_wal(self, con: sqlite3.Connection) -> None:
        """Switch the file to WAL (persistent); retried, as SQLite's busy handler skips it."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                con.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @staticmethod
    def _totals(con: sqlite3.Connection, dataset: str) -> tuple[float, float | None]:
        spent = con.execute(
            "SELECT COALESCE(SUM(epsilon), 0.0) FROM spends WHERE fingerprint = ?", (dataset,)
        ).fetchone()[0]
        row = con.execute(
            "SELECT budget_epsilon FROM datasets WHERE fingerprint = ?", (dataset,)
        ).fetchone()
        return float(spent), (None if row is None or row[0] is None else float(row[0]))

    @staticmethod
    def _refuse_if_over(dataset: str, spent: float, requested: float, limit: float | None,
                        label: str | None = None) -> None:
        if limit is not None and spent + requested > limit * (1 + _TOLERANCE) + _TOLERANCE:
            raise BudgetRefused(label or dataset[:16], spent, requested, limit)

    def _label(self, con: sqlite3.Connection, dataset: str) -> str | None:
        row = con.execute("SELECT label FROM datasets WHERE fingerprint = ?", (dataset,)).fetchone()
        return None if row is None else row[0]

    def check(self, dataset: str, epsilon: float) -> None:
        """Raise :class:`BudgetRefused` if spending ``epsilon`` more would exceed the budget.

        Advisory only (nothing is written); :meth:`spend` re-checks atomically.
        """
        _check_epsilon(epsilon)
        with self._connect() as con:
            spent, limit = self._totals(con, dataset)
            self._refuse_if_over(dataset, spent, epsilon, limit, self._label(con, dataset))

    def spend(
        self,
        dataset: str,
        epsilon: float,
        delta: float,
        release: str,
        *,
        unit: str = "record",
        accountant: str | None = None,
        mechanism: str | None = None,
        note: str | None = None,
        label: str | None = None,
    ) -> int:
        """Record a spend of (ε, δ) on ``dataset`` for ``release``, status ``'spent'``.

        Runs in one ``BEGIN IMMEDIATE`` transaction: the budget is re-read and
        checked under the write lock, so concurrent spends serialise.

        Args:
            dataset: fingerprint of the input dataset.
            epsilon: ε of the release per unit of privacy (≥ 0; ``inf`` allowed
                and refused by any finite budget).
            delta: δ of the release.
            release: a short name of the release (e.g. the output file name).
            unit: unit of privacy of ε: ``"token"``, ``"record"`` or ``"site"``.
            accountant: how ε was computed.
            mechanism: what produced the release.
            note: free text about the release; never put data content here.
            label: a name for the dataset (kept if one is already set).

        Returns:
            The spend id, for :meth:`mark_released`.
        """
        _check_epsilon(epsilon)
        if not (0.0 <= delta < 1.0):
            raise ValueError(f"delta must be in [0, 1), got {delta!r}")
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute(
                    "INSERT OR IGNORE INTO datasets (fingerprint, label, created) VALUES (?, ?, ?)",
                    (dataset, label, _now()),
                )
                if label is not None:
                    con.execute("UPDATE datasets SET label = ? WHERE fingerprint = ? AND "
                                "label IS NULL", (label, dataset))
                spent, limit = self._totals(con, dataset)
                self._refuse_if_over(dataset, spent, epsilon, limit, self._label(con, dataset))
                cur = con.execute(
                    "INSERT INTO spends (fingerprint, epsilon, delta, release, unit, accountant, "
                    "mechanism, note, created, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'spent')",
                    (dataset, float(epsilon), float(delta), release, unit, accountant,
                     mechanism, note, _now()),
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    def mark_released(self, spend_id: int) -> None:
        """Mark a spend released (its output is in place). Idempotent."""
        with self._connect() as con:
            cur = con.execute(
                "UPDATE spends SET status = 'released', released = ? "
                "WHERE id = ? AND status = 'spent'", (_now(), spend_id),
            )
            if cur.rowcount == 0 and con.execute(
                "SELECT 1 FROM spends WHERE id = ?", (spend_id,)
            ).fetchone() is None:
                raise BadInput(f"no spend with id {spend_id} in the ledger", path=self.path)

    def set_budget(self, dataset: str, epsilon: float | None, *, label: str | None = None) -> None:
        """Set the dataset's total ε budget (None removes the limit); may be below spent."""
        if epsilon is not None:
            _check_epsilon(epsilon)
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            con.execute(
                "INSERT INTO datasets (fingerprint, label, budget_epsilon, created) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(fingerprint) DO UPDATE SET "
                "budget_epsilon = excluded.budget_epsilon, "
                "label = COALESCE(excluded.label, datasets.label)",
                (dataset, label, epsilon, _now()),
            )
            con.execute("COMMIT")

    def spent(self, dataset: str) -> float:
        """ε spent on ``dataset`` so far (basic composition: the sum over all spends)."""
        with self._connect() as con:
            return self._totals(con, dataset)[0]

    def spent_delta(self, dataset: str) -> float:
        """δ spent on ``dataset`` so far (the sum over all spends)."""
        with self._connect() as con:
            row = con.execute("SELECT COALESCE(SUM(delta), 0.0) FROM spends "
                              "WHERE fingerprint = ?", (dataset,)).fetchone()
        return float(row[0])

    def budget(self, dataset: str) -> float | None:
        """The dataset's total ε budget, or None for no limit."""
        with self._connect() as con:
            return self._totals(con, dataset)[1]

    def rows(self) -> list[LedgerRow]:
        """One :class:`LedgerRow` per dataset, most recently used first."""
        query = (
            "SELECT d.fingerprint, d.label, d.budget_epsilon, COALESCE(SUM(s.epsilon), 0.0), "
            "COALESCE(SUM(s.delta), 0.0), COUNT(s.id), "
            "COALESCE(SUM(s.status = 'spent'), 0), GROUP_CONCAT(DISTINCT s.unit), "
            "MAX(s.created) FROM datasets d LEFT JOIN spends s ON s.fingerprint = d.fingerprint "
            "GROUP BY d.fingerprint ORDER BY COALESCE(MAX(s.id), 0) DESC, d.created DESC"
        )
        with self._connect() as con:
            result = con.execute(query).fetchall()
        return [
            LedgerRow(
                fingerprint=fp, label=label, budget_epsilon=budget, spent_epsilon=float(eps),
                spent_delta=float(dlt), n_spends=int(n), n_unreleased=int(unrel),
                remaining_epsilon=None if budget is None else float(budget) - float(eps),
                units=tuple(sorted(units.split(","))) if units else (), last_spend=last,
            )
            for fp, label, budget, eps, dlt, n, unrel, units, last in result
        ]

    def spends(self, dataset: str | None = None) -> list[Spend]:
        """The recorded spends (of one dataset, or all), oldest first."""
        query = "SELECT * FROM spends" + (" WHERE fingerprint = ?" if dataset else "")
        with self._connect() as con:
            result = con.execute(query + " ORDER BY id", (dataset,) if dataset else ()).fetchall()
        return [Spend(*row) for row in result]

    def resolve(self, dataset: str | Path) -> str:
        """A fingerprint from a file path, a label, a full fingerprint or a unique prefix (≥ 8)."""
        text = str(dataset)
        if Path(text).is_file():
            return fingerprint_file(text)
        with self._connect() as con:
            rows = con.execute("SELECT fingerprint FROM datasets WHERE label = ?",
                               (text,)).fetchall()
            if not rows and len(text) >= 8:
                rows = con.execute("SELECT fingerprint FROM datasets WHERE fingerprint LIKE ?",
                                   (text.lower() + "%",)).fetchall()
        if len(rows) == 1:
            return str(rows[0][0])
        if not rows and _HEX64.fullmatch(text.lower()):
            return text.lower()
        why = "matches several datasets" if rows else "is not a file, label or fingerprint"
        raise BadInput(f"dataset {text!r} {why} in the ledger", path=self.path)


def _check_epsilon(epsilon: float) -> None:
    if epsilon != epsilon or epsilon < 0:  # NaN or negative
        raise ValueError(f"epsilon must be >= 0, got {epsilon!r}")


@contextmanager
def record_release(
    ledger: Ledger | str | Path | None,
    dataset: str,
    epsilon: float,
    delta: float,
    release: str,
    **details: str | None,
) -> Iterator[int]:
    """Spend before the caller releases; mark released once the block completes.

    Use around the step that moves the output into place (e.g. inside
    :func:`veil.artifacts.atomic_output`). If the block raises or the process
    dies, the spend stays recorded as ``'spent'`` — over-counting, never
    under-counting. ``details`` are :meth:`Ledger.spend`'s keyword arguments.

    Yields:
        The spend id.

    Raises:
        BudgetRefused: before anything is released, if the budget would be exceeded.
    """
    book = ledger if isinstance(ledger, Ledger) else Ledger(ledger)
    spend_id = book.spend(dataset, epsilon, delta, release, **details)  # type: ignore[arg-type]
    yield spend_id
    book.mark_released(spend_id)


def spend_before_release(
    dataset: str,
    epsilon: float,
    delta: float,
    *,
    unit: str = "record",
    mechanism: str | None = None,
    note: str | None = None,
    release: str | None = None,
    path: str | Path | None = None,
) -> int:
    """Record a spend in the ledger at ``path`` (default location) and return its id.

    For callers that move the output themselves; call
    ``Ledger(path).mark_released(id)`` afterwards (or use :func:`record_release`).
    """
    return Ledger(path).spend(dataset, epsilon, delta, release or mechanism or "release",
                              unit=unit, mechanism=mechanism, note=note)
