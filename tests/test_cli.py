"""`digestbot --help` and `digestbot COMMAND --help` explain every command of DESIGN.md's contract."""

from __future__ import annotations

import argparse
import importlib
import re

import pytest

from digestbot.cli import HANDLERS, build_parser, main

# DESIGN.md's command line (`sub` is one command with three actions).
CONTRACT = ["init", "fetch", "enrich", "score", "topics", "sub add", "sub list", "sub rm",
            "preview", "send", "once", "run", "stats"]
CJK = re.compile(r"[\u4e00-\u9fff]")


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every command's parser by its name ("fetch", "sub add"…)."""
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[name] = sub
                out.update({f"{name} {k}": v for k, v in subparsers(sub).items()})
    return out


def test_every_contract_command_has_a_handler():
    assert set(CONTRACT) <= set(HANDLERS)


@pytest.mark.parametrize("command", sorted(HANDLERS))
def test_every_handler_is_in_the_cli_package_and_resolves(command):
    """The dispatch is by name (for a quick --help), so a typo would only show when run."""
    module, func = HANDLERS[command].split(":")
    assert module.startswith("digestbot.cli."), "stages never hold a command's handler"
    assert callable(getattr(importlib.import_module(module), func))


@pytest.mark.parametrize("command", CONTRACT)
def test_command_help_explains_it(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command.split(), "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    usage, _, rest = out.partition("\n\n")
    description = rest.split("\noptions:")[0].split("\npositional arguments:")[0]
    # A bilingual one-liner and at least one sentence saying what the command does.
    assert CJK.search(description) and " / " in description
    assert len(description.split()) >= 10, description
    parser = subparsers(build_parser())[command]
    undocumented = [a.dest for a in parser._actions if not a.help]
    assert not undocumented, f"{command}: options without help: {undocumented}"


def test_top_level_help_lists_every_command_and_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in {c.split()[0] for c in CONTRACT}:
        assert re.search(rf"^\s+{command}\s+\S", out, re.M), command
    assert "Exit status: 0 success, 2 bad usage" in out and "DIGESTBOT_CONFIG" in out
