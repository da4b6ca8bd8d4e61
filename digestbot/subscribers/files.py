"""Reader files for `sub import` / `sub export`: CSV with a header row, or JSON Lines.

Only the shape of the file is handled here (encoding, columns, line numbers); what a value
means is checked by `subscribers.bulk` with the same validators as `sub add`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from digestbot.errors import UsageError

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")

# The columns in the order an export writes them; only channel and address are required.
COLUMNS = ("channel", "address", "topics", "threshold", "zone", "time", "lang", "max", "cadence")
# Other names people (and `sub list --json`) use for the same columns.
_ALIASES = {"tz": "zone", "send_at": "time", "max_papers": "max", "topic": "topics"}
# Several topics in one CSV cell: `;` or `|` (a comma would clash with the CSV itself).
_TOPIC_SEPARATORS = re.compile(r"[;|]")


@dataclass(frozen=True)
class RawRow:
    """One record as read: `line` is where it starts in the file (1 = the first line)."""

    line: int
    fields: dict[str, Any]


def problem(line: int, message: object) -> str:
    """One bad row as the operator reads it: the line number, then the bilingual message."""
    return f"第 {line} 行 / line {line}: {message}"


def detect_format(name: str | None, data: bytes) -> Format:
    """By extension (.csv, .jsonl / .ndjson / .json), else by content: JSON Lines start with `{`."""
    suffix = (name or "").lower().rsplit(".", 1)[-1] if name and "." in name else ""
    if suffix in ("jsonl", "ndjson", "json"):
        return "jsonl"
    if suffix == "csv":
        return "csv"
    return "jsonl" if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def decode(data: bytes) -> str:
    """UTF-8 text (a byte-order mark is dropped); anything else names the line it breaks on."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UsageError(
            problem(line, "不是 UTF-8 文本，请另存为 UTF-8 / not UTF-8 text: save the file as UTF-8")
        ) from None


def _column(name: str) -> str | None:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in COLUMNS else None


def read_rows(data: bytes, fmt: Format) -> tuple[list[RawRow], list[str]]:
    """The file's records and the problems found in its shape (bad JSON, a stray field…).

    A problem with the whole file (not UTF-8, no usable header) is a UsageError instead.
    """
    text = decode(data)
    return _read_jsonl(text) if fmt == "jsonl" else _read_csv(text)


def _read_csv(text: str) -> tuple[list[RawRow], list[str]]:
    # newline="" lets the csv module see CRLF and quoted line breaks as they are.
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return [], []
    except csv.Error as exc:
        raise UsageError(problem(1, f"无法读取表头 / unreadable header: {exc}")) from None
    columns = [_column(h) for h in header]
    unknown = [h for h, c in zip(header, columns, strict=True) if c is None and h.strip()]
    if unknown:
        raise UsageError(problem(1, f"未知列 / unknown column(s) {', '.join(map(repr, unknown))}; "
                                    f"可用 / use: {', '.join(COLUMNS)}"))
    missing = [c for c in ("channel", "address") if c not in columns]
    if missing:
        raise UsageError(problem(1, f"表头缺少列 / the header lacks {', '.join(missing)} "
                                    f"(columns: {', '.join(COLUMNS)})"))
    rows: list[RawRow] = []
    problems: list[str] = []
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(problem(start, f"CSV 格式错误 / malformed CSV: {exc}"))
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue  # a blank line is nobody
        if len(cells) > len(columns):
            problems.append(problem(line, f"多出 {len(cells) - len(columns)} 个字段 / "
                                          f"{len(cells) - len(columns)} field(s) beyond the header"))
            continue
        fields = {c: (v.strip() or None) for c, v in zip(columns, cells, strict=False) if c}
        if fields.get("topics"):
            fields["topics"] = split_topics(fields["topics"])
        rows.append(RawRow(line, fields))
    return rows, problems


def split_topics(cell: str) -> list[str]:
    return [t.strip() for t in _TOPIC_SEPARATORS.split(cell) if t.strip()]


def _read_jsonl(text: str) -> tuple[list[RawRow], list[str]]:
    rows: list[RawRow] = []
    problems: list[str] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(problem(n, f"JSON 无效 / invalid JSON: {exc.msg}"))
            continue
        if not isinstance(obj, dict):
            problems.append(problem(n, "每行应为一个 JSON 对象 / each line must be a JSON object"))
            continue
        fields: dict[str, Any] = {}
        unknown = []
        for key, value in obj.items():
            column = _column(str(key))
            if column is None:
                unknown.append(str(key))
            else:
                fields[column] = _json_value(column, value)
        if unknown:
            problems.append(problem(n, f"未知字段 / unknown key(s) {', '.join(map(repr, unknown))}; "
                                       f"可用 / use: {', '.join(COLUMNS)}"))
            continue
        rows.append(RawRow(n, fields))
    return rows, problems


def _json_value(column: str, value: Any) -> Any:
    """JSON values as the validators take them: text (numbers as digits), topics a list."""
    if value is None or value == "":
        return None
    if column == "topics":
        if isinstance(value, str):
            return split_topics(value)
        if isinstance(value, list):
            return [str(v).strip() for v in value if str(v).strip()]
        return [str(value)]
    if isinstance(value, bool):  # `true` is no threshold; the validator says so
        return str(value).lower()
    return str(value).strip() if isinstance(value, str | int) else json.dumps(value)


def write_rows(records: Iterable[dict[str, Any]], fmt: Format) -> str:
    """Records (COLUMNS as keys, topics a list) as a file `read_rows` reads back the same."""
    out = io.StringIO(newline="")
    if fmt == "jsonl":
        for record in records:
            out.write(json.dumps({c: record.get(c) for c in COLUMNS}, ensure_ascii=False) + "\n")
        return out.getvalue()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for record in records:
        cells = dict(record, topics=";".join(record.get("topics") or []))
        writer.writerow(["" if cells.get(c) is None else cells[c] for c in COLUMNS])
    return out.getvalue()
