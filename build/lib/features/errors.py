"""Errors for bad input data: every message names the file, the row and the field."""

from __future__ import annotations


class DataError(ValueError):
    """A malformed input row or file.

    Args:
        file: path (or name) of the offending file.
        row: 1-based data row (header excluded); ``None`` for file-level problems.
        field: column name; ``None`` when the whole row or file is at fault.
        reason: what is wrong, in words a person can act on.
    """

    def __init__(self, file: str, row: int | None, field: str | None, reason: str) -> None:
        self.file, self.row, self.field, self.reason = str(file), row, field, reason
        where = [f"file {self.file}"]
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {reason}")
