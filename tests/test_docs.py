"""The README's configuration table and quick start stay true to the code."""

from pathlib import Path

from digestbot.config import KEYS

ROOT = Path(__file__).parent.parent


def test_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [k.env for k in KEYS if f"`{k.env}`" not in readme]
    assert not missing, f"README configuration table lacks {missing}"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make test" in readme and "make run" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
