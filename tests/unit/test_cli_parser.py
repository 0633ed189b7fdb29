"""The CLI's argparse set-up: help as argparse prints it, usage errors in one line."""

from __future__ import annotations

import pytest

from hutch.cli import main as cli_main
from hutch.cli import run as run_verb

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("columns", ["50", "120"])
def test_help_is_what_argparse_itself_prints_for_the_width(monkeypatch, columns):
    # Our formatter asks for the width once per process instead of once per option.
    import argparse

    monkeypatch.setenv("COLUMNS", columns)
    monkeypatch.setattr(cli_main, "_width", [])
    ours = cli_main._parser("hutch run", run_verb.HELP)
    stock = argparse.ArgumentParser(prog="hutch run", description=run_verb.HELP)
    for parser in (ours, stock):
        run_verb.add_arguments(parser)
    assert ours.format_help() == stock.format_help()


def test_usage_errors_are_one_line(monkeypatch):
    parser = cli_main._parser("hutch run", run_verb.HELP)
    run_verb.add_arguments(parser)
    with pytest.raises(cli_main.UsageError, match="hutch run: .*--memory"):
        parser.parse_args(["--memory"])
