"""A database or config file that cannot be used: one line saying what to do, the right exit
status, never a traceback, and the database left as it was."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from digestbot import store as store_module
from digestbot.cli import main
from digestbot.config import Settings
from digestbot.store import Store
from tests.fakes.digests import add_subscriber

SUB_ADD = ["sub", "add", "--email", "ada@example.org", "--topic", "post-training"]


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("digestbot: error: ")
    return err


def fingerprint(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def settled(settings: Settings) -> str:
    """The database with one subscriber, checkpointed into the main file, and its hash."""
    with Store(settings.db) as store:
        add_subscriber(store, "bob@example.org")
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return fingerprint(settings.db)


def test_a_file_that_is_not_a_database(settings: Settings, capsys) -> None:
    Path(settings.db).parent.mkdir(parents=True)
    Path(settings.db).write_bytes(b"hello, this is a shopping list\n" * 200)
    before = fingerprint(settings.db)
    assert main(SUB_ADD) == 1
    assert "is not a usable SQLite database" in one_line_error(capsys)
    assert fingerprint(settings.db) == before


def test_a_read_only_database(settings: Settings, capsys, monkeypatch) -> None:
    before = settled(settings)
    connect = sqlite3.connect

    def read_only(path: str, **kwargs):  # what a read-only mount or file gives SQLite
        return connect(f"file:{path}?mode=ro", uri=True, **kwargs)

    monkeypatch.setattr(store_module.sqlite3, "connect", read_only)
    assert main(SUB_ADD) == 1
    assert "is read-only" in one_line_error(capsys)
    monkeypatch.undo()
    assert fingerprint(settings.db) == before


def test_a_full_disk(settings: Settings, capsys, monkeypatch) -> None:
    before = settled(settings)
    connect = sqlite3.connect

    def full(path: str, **kwargs):  # the file may not grow by a single page
        conn = connect(path, **kwargs)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    monkeypatch.setattr(store_module.sqlite3, "connect", full)
    many = [a for i in range(300) for a in ("--topic", f"custom topic number {i}")]
    assert main([*SUB_ADD[:4], "--custom", *many]) == 1
    assert "is full" in one_line_error(capsys)
    monkeypatch.undo()
    with Store(settings.db) as store:
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert [r["address"] for r in store.db.query("select address from subscribers")] == [
            "bob@example.org"]
    assert fingerprint(settings.db) == before


def test_config_not_utf8_or_a_folder(capsys, monkeypatch, tmp_path: Path) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('mail_from = "caf\xe9@example.org"\n'.encode("latin-1"))
    monkeypatch.setenv("DIGESTBOT_CONFIG", str(bad))
    assert main(["stats"]) == 2
    assert "is not UTF-8" in one_line_error(capsys)
    folder = tmp_path / "conf.d"
    folder.mkdir()
    monkeypatch.setenv("DIGESTBOT_CONFIG", str(folder))
    assert main(["stats"]) == 2
    assert "is a folder" in one_line_error(capsys)
    assert main(["init"]) == 2
    assert "is a folder" in one_line_error(capsys)


def test_serve_on_a_port_that_does_not_exist(capsys) -> None:
    assert main(["serve", "--port", "70000"]) == 2
    assert "70000" in one_line_error(capsys)


def test_init_creates_the_file_digestbot_config_names_0600_from_the_start(
    tmp_path: Path, settings: Settings
) -> None:
    target = tmp_path / "new.toml"
    # strace-free proof of "0600 from creation": the umask would let a 0644 create through,
    # and a watcher sees every mode the path ever had.
    env = {**os.environ, "DIGESTBOT_CONFIG": str(target)}
    watcher = subprocess.Popen(
        [sys.executable, "-c",
         "import os, sys, time\n"
         "seen = set(); end = time.monotonic() + 20\n"
         "while time.monotonic() < end and not os.path.exists(sys.argv[1] + '.done'):\n"
         "    for name in os.listdir(os.path.dirname(sys.argv[1])):\n"
         "        if name.endswith('.toml') or name.endswith('.tmp'):\n"
         "            try: seen.add(oct(os.stat(os.path.join(os.path.dirname(sys.argv[1]), name)).st_mode & 0o777))\n"
         "            except FileNotFoundError: pass\n"
         "print(' '.join(sorted(seen)))\n", str(target)],
        stdout=subprocess.PIPE, text=True)
    done = subprocess.run([sys.executable, "-m", "digestbot", "init"], env=env,
                          capture_output=True, text=True, timeout=60)
    Path(f"{target}.done").touch()
    modes = watcher.communicate(timeout=30)[0].split()
    assert done.returncode == 0, done.stderr
    assert f"wrote {target}" in done.stdout
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert set(modes) <= {"0o600"}
    assert 'secret = "' in target.read_text(encoding="utf-8")
    assert Path(settings.db).exists()
