"""Every command's ``--help``: a description, help for every option, examples; and
``serve --help`` lists every environment variable the configuration reads."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from dispatcher.cli import helptext
from dispatcher.cli.main import build_parser
from dispatcher.config import Config, load_config
from tests.test_cli import dispatcher

COMMANDS = [
    (path, parser)
    for path, parser, _ in helptext._commands(build_parser(), ())
    if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
]
"""Every command (not the groups, like ``call``, whose help lists their commands)."""


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_a_description_examples_and_help_for_each_option(
    path: tuple[str, ...], parser: argparse.ArgumentParser
) -> None:
    name = " ".join(path)
    assert parser.description, name
    assert helptext.EXAMPLES.get(name), f"no example of {name}"
    for example in helptext.EXAMPLES[name]:
        assert f"dispatcher {name}" in example or name == "serve", example
    for action in parser._actions:
        assert action.help, f"{name}: {action.option_strings or action.dest} has no help"
    shown = parser.format_help()
    assert "example" in shown
    assert helptext.EXAMPLES[name][0] in shown


def test_every_example_names_a_command() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert set(helptext.EXAMPLES) <= names


def test_the_environment_list_names_every_key_of_the_configuration() -> None:
    listed = helptext.environment()
    defaults = Config()
    for section in dataclasses.fields(Config):
        value = getattr(defaults, section.name)
        if dataclasses.is_dataclass(value):
            for key in dataclasses.fields(value):
                assert f"DISPATCHER_{section.name}_{key.name}".upper() in listed
    # Each listed variable is one the configuration reads (an unknown one is an error).
    for line in listed.splitlines():
        var = line.split()[0]
        if var.startswith("DISPATCHER_") and "default " in line:
            load_config(env={var: _valid_for(line)})


def _valid_for(line: str) -> str:
    """A value the key accepts: its default as the environment writes it."""
    default = line.split("default ", 1)[1].strip().strip("'")
    return "" if default == "none" else default.removesuffix("...")


async def test_serve_help_lists_the_environment_variables(home: Path) -> None:
    run = await dispatcher(home, "serve", "--help")
    assert run.code == 0, run.err
    listed = {line.split()[0] for line in run.out.splitlines() if line.startswith("  ")}
    expected = {"DISPATCHER_PACING_DEFAULT_RATE", "DISPATCHER_HTTP_LISTEN", "DISPATCHER_HOME"}
    expected |= {"DISPATCHER_API_TOKEN", "DISPATCHER_DEFAULT_REGION", "TWILIO_AUTH_TOKEN"}
    assert expected <= listed
    assert "DISPATCHER_PACING_VALIDITY                   default 10h" in run.out
    assert "--home and --config go before the command" in " ".join(run.out.split())


async def test_a_command_s_help_shows_its_examples(home: Path) -> None:
    run = await dispatcher(home, "call", "place", "--help")
    assert run.code == 0, run.err
    assert (
        "dispatcher call place --from +15550000100 --to +15550200001 --script reminder" in run.out
    )
    assert "DISPATCHER_DEFAULT_REGION" in run.out  # how national numbers are read


async def test_the_command_list_ends_with_examples(home: Path) -> None:
    run = await dispatcher(home, "--help")
    assert run.code == 0, run.err
    assert run.out.rstrip().endswith("Each command's --help has its examples.")
    assert all(example in run.out for example in helptext.TOP)
