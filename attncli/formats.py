"""--format table|md|csv|json (llama-bench's -o): the same results as GitHub markdown that
pastes into an issue, or as CSV and JSON that describe themselves (a header row; keys)."""

from __future__ import annotations

import csv
import io
from typing import Any, Iterable

from attncli.errors import BadInputError

FORMATS = ("table", "md", "csv", "json")


def check_format(fmt: str, json_flag: bool = False) -> str:
    """The format asked for; --json is --format json."""
    if fmt not in FORMATS:
        raise BadInputError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if json_flag and fmt not in ("table", "json"):
        raise BadInputError(f"--json and --format {fmt} ask for two formats: give one")
    return "json" if json_flag else fmt


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return " ".join(map(str, v))
    return str(v)


def markdown(headers: list[str], rows: Iterable[list[Any]], title: str | None = None) -> str:
    """A GitHub table; pipes inside cells escaped."""
    esc = lambda v: _cell(v).replace("|", "\\|")  # noqa: E731
    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(headers: list[str], rows: Iterable[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(headers)
    for row in rows:
        w.writerow([_cell(v) for v in row])
    return buf.getvalue()
