"""User-facing errors with exit codes.

User mistakes raise :class:`BadInput` (exit code 2); a privacy-budget refusal
raises :class:`BudgetRefused` (exit code 3). Messages name the file, row and
column — never the text itself (PHI safety).
"""

from __future__ import annotations

from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_BUDGET_REFUSED = 3


class VeilError(Exception):
    """Base class for errors reported to the user as one line, without a traceback."""

    exit_code: int = 1


class BadInput(VeilError):
    """Invalid user input: a file, a row, a column or an option.

    Args:
        message: what is wrong, without quoting any input text.
        path: the file concerned, if any.
        row: 1-based data row (header excluded), if any.
        column: column name or index, if any.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        row: int | None = None,
        column: str | int | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.row = row
        self.column = column
        where = []
        if self.path is not None:
            where.append(self.path)
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)


class BudgetRefused(VeilError):
    """A release would exceed the dataset's total privacy budget in the ledger."""

    exit_code = EXIT_BUDGET_REFUSED

    def __init__(self, dataset: str, spent: float, requested: float, limit: float) -> None:
        self.dataset = dataset
        self.spent = spent
        self.requested = requested
        self.limit = limit
        super().__init__(
            f"privacy budget refused for dataset {dataset}: spent {spent:g} + "
            f"requested {requested:g} > limit {limit:g}"
        )
