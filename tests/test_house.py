"""The house (DESIGN.md): each table has one owner, modules stay readable, imports go down.

The layers contract itself is import-linter's (`lint-imports`, run by `make test`); these
tests keep the rest of the shape: only a table's owner writes it, no module grows past a
screenful of screens, and no import hides inside a function.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "digestbot"

# table -> the module (or package) that alone writes it; store.py only creates them.
OWNERS: dict[str, str] = {
    "papers": "sources",
    "announcements": "sources",
    "fetch_log": "sources",
    "custom_topics": "topics",
    "scores": "enrich",
    "first_pages": "enrich",
    "enrichments": "enrich",
    "llm_calls": "enrich",
    "subscribers": "subscribers",
    "subscriptions": "subscribers",
    "followed_authors": "subscribers",
    "keyword_filters": "subscribers",
    "notice_optins": "subscribers",
    "notices_sent": "subscribers",
    "feedback": "subscribers",
    "libraries": "subscribers",
    "library_items": "subscribers",
    "deliveries": "outbox",
    "delivery_parts": "outbox",
    "delivered_papers": "outbox",
    "meta": "store",
}
TABLES = "|".join(OWNERS)
# SQL that changes rows, and sqlite-utils' writing methods on db["table"] / db.table("table").
WRITES = [
    re.compile(rf"\b(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+"
               rf"[\"']?({TABLES})\b", re.I),
    re.compile(rf"""(?:\[|\.table\()\s*["']({TABLES})["']\s*[\])]\s*\.\s*"""
               r"(?:insert|insert_all|upsert|upsert_all|update|delete|delete_where|drop)\b"),
]
MAX_LINES = 420


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def owner_of(path: Path) -> str:
    """`digestbot/enrich/llm.py` -> "enrich", `digestbot/outbox.py` -> "outbox"."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_each_table_is_written_by_its_owner_only() -> None:
    strangers = []
    for path in modules():
        text = path.read_text(encoding="utf-8")
        for pattern in WRITES:
            for match in pattern.finditer(text):
                table = match.group(1)
                if owner_of(path) != OWNERS[table]:
                    line = text.count("\n", 0, match.start()) + 1
                    strangers.append(f"{path.relative_to(PACKAGE)}:{line} writes {table}")
    assert not strangers, "\n".join(strangers)


def test_the_ownership_check_sees_both_kinds_of_write() -> None:
    """The patterns above would catch a stray write (so the test above can fail)."""
    samples = ['db.execute("UPDATE deliveries SET status = ?")',
               "db.execute('INSERT OR IGNORE INTO scores (id) VALUES (?)')",
               'store.db["subscribers"].upsert(row, pk="id")',
               "db.table('papers').insert_all(rows)"]
    found = [m.group(1) for s in samples for p in WRITES for m in p.finditer(s)]
    assert found == ["deliveries", "scores", "subscribers", "papers"]


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_a_few_screens(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{path.name}: {lines} lines; split it by what it does"


def test_no_import_inside_a_function() -> None:
    """Imports at the top, where import-linter and a reader see them; none to dodge a cycle."""
    hidden = []
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(func):
                    if isinstance(node, ast.Import | ast.ImportFrom):
                        hidden.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not hidden, hidden


def test_one_exception_tree() -> None:
    """Every exception class lives in errors.py (under DigestbotError): no second root."""
    strays = []
    for path in modules():
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                    ast.unparse(base).endswith(("Error", "Exception")) for base in node.bases):
                strays.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert not strays, strays
