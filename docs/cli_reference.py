"""Writes docs/cli.md, every command's ``--help`` as argparse prints it, so the reference cannot
drift from the parser (tests/test_docs_and_benchmarks.py compares the file with ``render()``).

Run after changing an option: ``.venv/bin/python docs/cli_reference.py``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

WIDTH = 100  # argparse wraps at the terminal's width: fixed here so the file is the same everywhere


def render() -> str:
    from jaxagree.cli import build_parser

    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH + 2)  # HelpFormatter's width is COLUMNS - 2
    try:
        parser = build_parser()
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
        parts = ["# jaxagree command reference", "",
                 "Generated from `--help` by `docs/cli_reference.py`; a test keeps the two equal.", "",
                 "```text", parser.format_help().rstrip(), "```"]
        for name, command in commands.items():
            parts += ["", f"## jaxagree {name}", "", "```text", command.format_help().rstrip(), "```"]
        return "\n".join(parts) + "\n"
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


if __name__ == "__main__":
    path = Path(__file__).with_name("cli.md")
    path.write_text(render())
    print(f"wrote {path}")
