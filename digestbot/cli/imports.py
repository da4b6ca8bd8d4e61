"""`digestbot sub import FILE` and `digestbot sub export [FILE]`: many readers at once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from digestbot.config import Settings
from digestbot.errors import UsageError
from digestbot.store import Store
from digestbot.subscribers import bulk, files


def cmd_sub_import(settings: Settings, args: argparse.Namespace) -> int:
    if args.file == "-":
        data, name = sys.stdin.buffer.read(), None
    else:
        data, name = Path(args.file).read_bytes(), args.file
    fmt = args.format or files.detect_format(name, data)
    with Store(settings.db) as store:
        report = bulk.import_readers(store, data, fmt, custom=args.custom)
    if not report.ok:
        for line in report.problems:
            print(line, file=sys.stderr)
        raise UsageError(
            f"{len(report.problems)} 行有误，未导入任何读者 / {len(report.problems)} bad "
            f"row(s), nothing imported (of {report.rows} rows)")
    print(f"已导入 / imported {report.rows} rows: {report.added} added, {report.updated} updated, "
          f"{report.subscriptions} subscriptions")
    return 0


def cmd_sub_export(settings: Settings, args: argparse.Namespace) -> int:
    to_stdout = args.file in (None, "-")
    fmt = args.format or ("csv" if to_stdout else files.detect_format(args.file, b""))
    with Store(settings.db) as store:
        text = files.write_rows(bulk.export_records(store), fmt)
    if to_stdout:
        sys.stdout.write(text)
    else:
        Path(args.file).write_text(text, encoding="utf-8", newline="")
        print(f"已导出 / exported to {args.file}")
    return 0
