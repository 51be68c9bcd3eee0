"""What a client command prints: its answer as JSON with ``--json``, else lines for
people."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any


def json_flag(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` the ``--json`` option."""
    parser.add_argument("--json", action="store_true", help="print JSON")


def out(args: argparse.Namespace, result: Any, human: Callable[[Any], object]) -> None:
    """Print ``result``: as JSON when ``--json`` was given, else with ``human``."""
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    else:
        human(result)


def each(show: Callable[[dict[str, Any]], None], items: list[dict[str, Any]]) -> None:
    """Show every item of a list answer."""
    for item in items:
        show(item)
