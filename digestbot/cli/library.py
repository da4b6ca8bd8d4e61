"""`digestbot sub library`: a reader's paper library from a BibTeX/RIS file or Zotero."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from digestbot.cli.profile import _existing
from digestbot.config import Settings
from digestbot.errors import UsageError
from digestbot.store import Store
from digestbot.subscribers import library, library_import
from digestbot.subscribers.library_files import MAX_BYTES, too_big
from digestbot.subscribers.validate import validate_threshold

KEY_ENV = "DIGESTBOT_ZOTERO_KEY"


def _read_file(path: str) -> bytes:
    """The file's bytes, refused by its size before it is read (a 50 MB export is a mistake)."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_BYTES:
            raise too_big(size)
        with file.open("rb") as f:
            return f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"无法读取 / cannot read {path}: {exc.strerror or exc}") from None


def _zotero_key(args: argparse.Namespace) -> str:
    """The key from --key-file or DIGESTBOT_ZOTERO_KEY: never from argv, where `ps` and the
    shell history would show it."""
    if args.key_file:
        try:
            key = Path(args.key_file).read_text(encoding="utf-8", errors="replace").strip()
        except OSError as exc:
            # The path is not echoed: a key pasted in its place would land on the screen.
            raise UsageError(f"无法读取 --key-file / cannot read the --key-file: "
                             f"{exc.strerror or type(exc).__name__}") from None
    else:
        key = os.environ.get(KEY_ENV, "").strip()
    if not key:
        raise UsageError(f"需要 Zotero 只读密钥:设置 {KEY_ENV} 或给出 --key-file FILE / a read-only "
                         f"Zotero key is needed: set {KEY_ENV} or give --key-file FILE")
    return key


def cmd_sub_library(settings: Settings, args: argparse.Namespace) -> int:
    chosen = [bool(args.file), bool(args.zotero), args.refresh, args.clear]
    if sum(chosen) > 1:
        raise UsageError("--file、--zotero、--refresh、--clear 只能选一个 / give only one of "
                         "--file, --zotero, --refresh, --clear")
    # Everything that can be checked or fetched is, before the database is touched.
    if args.threshold is not None:
        validate_threshold(args.threshold)
    data = _read_file(args.file) if args.file else None
    key = _zotero_key(args) if args.zotero else None
    with Store(settings.db) as store:
        _existing(store, args.id)
        if data is not None:
            library_import.import_file(store, args.id, data, Path(args.file).name)
        elif key is not None:
            library_import.import_zotero(store, args.id, args.zotero, key, settings.zotero_api_url)
        elif args.refresh:
            library_import.refresh(store, args.id, settings.zotero_api_url)
        elif args.clear and not library.delete_library(store, args.id):
            print("没有文库 / no library to clear")
        if args.threshold is not None and not library.set_threshold(store, args.id, args.threshold):
            raise UsageError("还没有文库,先用 --file 或 --zotero 导入 / no library yet: import one "
                             "with --file or --zotero first")
        print(library.describe(library.get_library(store, args.id), "both"))
    return 0
