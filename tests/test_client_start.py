"""A client command starts quickly: it loads what it needs to ask the service and
print, not the libraries of numbers, scripts, counting or email addresses, which
took about half of its start (``dispatcher status``, timed with farm-bench from
process start to exit: 0.98 s of CPU before, 0.54 s after, median of 14 pairs on a
loaded machine). Checked here in fresh interpreters."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.cli import engagement
from dispatcher.core import metrics, report
from tests.test_imports import among, loaded, run_cli

SLOW_TO_LOAD = (
    "phonenumbers",
    "email_validator",
    "dispatcher.core.scripts",
    "dispatcher.core.metrics",
    "dispatcher.core.numbers",
    "rich",
)

QUICK = [
    ["status"],
    ["ping"],
    ["message", "msg_1"],
    ["send", "--from", "+15550000001", "--to", "+15550100001", "--body", "Hi"],
    ["find", "+15550100001"],
    ["campaign", "show", "cmp_1"],
    ["call", "show", "call_1"],
]


@pytest.mark.parametrize("args", QUICK, ids=" ".join)
def test_a_client_command_loads_nothing_slow(tmp_path: Path, args: list[str]) -> None:
    result = run_cli(["--home", str(tmp_path / "home"), *args], tmp_path)
    assert result.stdout.splitlines()[0] == "exit 3", result.stdout + result.stderr
    assert among(loaded(result), SLOW_TO_LOAD) == []


def test_a_national_number_loads_the_number_library_when_it_is_needed(tmp_path: Path) -> None:
    result = run_cli(["--home", str(tmp_path / "home"), "find", "555-010-0001"], tmp_path)
    assert result.stdout.splitlines()[0] == "exit 3", result.stdout + result.stderr
    assert "phonenumbers" in loaded(result)


def test_the_command_line_s_choices_are_the_counting_s() -> None:
    assert engagement.BREAKDOWNS == metrics.BY
    assert tuple(report.BUCKETS) == engagement.BUCKETS
