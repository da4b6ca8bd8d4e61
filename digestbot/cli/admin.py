"""`digestbot init`: write the config (with a fresh signing secret) and create the database."""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

from digestbot.config import Settings, render_config
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
        path.parent.mkdir(parents=True, exist_ok=True)
        # It holds the signing secret: created 0600 (and an old file made 0600 before the
        # secret goes in), never readable by others even for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with open(fd, "w", encoding="utf-8") as out:
            out.write(text)
        print(f"wrote {path}")
    with Store(settings.db):
        pass
    print(f"database ready: {settings.db}")
    return 0
