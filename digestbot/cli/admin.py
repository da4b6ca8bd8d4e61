"""`digestbot init`: write the config (with a fresh signing secret) and create the database."""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

from digestbot.config import Settings, render_config
from digestbot.errors import UsageError
from digestbot.store import Store


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    """Write a commented config (with a fresh signing secret) and create the database."""
    secret = settings.secret.get() if settings.secret else secrets.token_urlsafe(32)
    text = render_config(secret)
    if args.print:
        print(text)
        return 0
    path = Path(args.config) if args.config else (settings.config_path or Path("digestbot.toml"))
    if path.exists() and not args.force:
        print(f"{path} exists; kept it (use --force to overwrite)")
    else:
        _write_private(path, text)
        print(f"wrote {path}")
    with Store(settings.db):
        pass
    print(f"database ready: {settings.db}")
    return 0


def _write_private(path: Path, text: str) -> None:
    """Write the file readable by its owner only from the first byte: it holds the signing
    secret, so it is never 0644 even for a moment. A temp file and a rename, so an existing
    file is either kept or fully replaced."""
    if path.is_dir():
        raise UsageError(f"{path} is a folder; name a file with --config or DIGESTBOT_CONFIG")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
