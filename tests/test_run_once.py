"""`digestbot once` (and `make run`'s `once --demo`) as a first-time user sees it, offline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from digestbot.cli import main
from tests.fakes.smtp import free_port


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every arXiv URL points at a closed port on loopback: connection refused, like no network."""
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("RSS", "API", "LIST", "PDF"):
        monkeypatch.setenv(f"DIGESTBOT_ARXIV_{name}_URL", f"{dead}/{name.lower()}/")


def test_demo_offline_says_it_once_and_shows_where_the_digest_is(
    offline: None, isolated_env: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["once", "--demo"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    # One line about arXiv, naming the reason once, the sample and the way to ingest a file.
    about = [line for line in lines + err.splitlines() if "127.0.0.1" in line or "unreachable" in line]
    assert len(about) == 1, out + err
    assert about[0].count("unreachable") == 1 and about[0].count("无法访问") == 1
    assert "bundled sample" in about[0] and "once --feed FILE" in about[0]
    assert "WARNING" not in err

    # The file written, by its path (relative to where the user stands), not only the folder.
    written = sorted((isolated_env / "var" / "outbox").glob("*.eml"))
    assert len(written) == 1
    assert f"  {written[0].relative_to(isolated_env)}" in lines
    assert re.search(r"preview --subscriber 1 --format html > digest\.html$", out, flags=re.M)
    assert "sub add --email" in out and re.search(r"digestbot run\b", out)

    # A second run sends nothing twice, and says so instead of pointing at an old file as new.
    assert main(["once", "--demo"]) == 0
    out, err = capsys.readouterr()
    assert "no new email" in out and "email written to" not in out
    assert sorted((isolated_env / "var" / "outbox").glob("*.eml")) == written


def test_once_without_demo_offline_is_a_one_line_error(
    offline: None, isolated_env: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["once"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.count("unreachable") == 1
    assert "once --feed FILE" in err
    assert not (isolated_env / "var" / "outbox").exists()
