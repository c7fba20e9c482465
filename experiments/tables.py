"""Table files: every CSV the experiments write, and the markdown tables beside them.

One writer so that every table is written the same way: the directory made, the file replaced atomically
(a reader never sees half a table, and an interrupted write leaves the previous one), columns in a fixed
order, keys a row has beyond the columns ignored, missing ones left empty.
"""
from __future__ import annotations

import csv
import os
from typing import Any, Callable, Mapping, Optional, Sequence


def write_csv(path: str, rows: Sequence[Mapping[str, Any]], columns: Optional[Sequence[str]] = None) -> str:
    """Writes rows to path as CSV with a header; returns path.

    columns: the header, in order (default: the first row's keys; no rows and no columns: an empty file).
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    columns = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", newline="") as f:
            if columns:
                w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def format_cell(v: Any) -> str:
    """A markdown cell: empty for None, 4 significant digits for floats, str otherwise."""
    return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def markdown(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
             cell: Callable[[Any], str] = format_cell) -> str:
    """A markdown table of rows' columns (a header, a rule, one line per row), ending in a newline."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"
