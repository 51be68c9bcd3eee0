"""What a light import loads: the pure modules and the client commands load neither
the service nor its peers (aiohttp, the twilio SDK, aiosqlite, asyncpg).

Each check runs in a fresh interpreter, so nothing this test process imported counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dispatcher as package

SOURCE_ROOT = Path(package.__file__).resolve().parent.parent
CHILD_TIMEOUT = 60.0
HEAVY = ("twilio", "aiohttp", "aiosqlite", "asyncpg", "dispatcher.service")
"""Never loaded by a pure module or a client command."""
SERVICE_SIDE = (*HEAVY, "dispatcher.web.app", "dispatcher.control.server")
"""What only ``serve`` (and the demo) load."""
PURE = (
    "dispatcher.core.model",
    "dispatcher.core.calls",
    "dispatcher.core.scripts",
    "dispatcher.core.campaigns",
    "dispatcher.engine.automations",
    "dispatcher.core.metrics",
    "dispatcher.config",
)

REPORT_LOADED = """
import json, sys
print(json.dumps(sorted(sys.modules)))
"""


def run_python(code: str, cwd: Path, *, report: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -c CODE`` in a fresh interpreter that imports this checkout; with
    ``report``, it then prints the modules it loaded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + (REPORT_LOADED if report else "")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m dispatcher ARGS`` in a fresh interpreter that prints ``exit CODE``,
    then the modules it loaded."""
    code = f"""
        import runpy, sys
        sys.argv = {["dispatcher", *args]!r}
        try:
            runpy.run_module("dispatcher", run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            print("exit", exc.code)
    """
    result = run_python(code, cwd)
    assert result.returncode == 0, result.stderr
    return result


def loaded(result: subprocess.CompletedProcess[str]) -> set[str]:
    """The modules the child printed as loaded (its last line of output)."""
    assert result.stdout, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def among(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """The modules that are one of ``names`` or inside one of them."""
    return sorted(m for m in modules if any(m == n or m.startswith(f"{n}.") for n in names))


def test_the_pure_modules_load_no_service_and_no_provider(tmp_path: Path) -> None:
    rules = tmp_path / "automations.toml"
    rules.write_text('[[automation]]\nname = "a"\non = "text.delivered"\ndo = "call"\n'
                     'script = "hello"\n')  # fmt: skip
    code = f"""
        from pathlib import Path
        {"; ".join(f"import {name}" for name in PURE)}
        from dispatcher import config
        from dispatcher.engine import automations
        from dispatcher.core import scripts

        settings = config.load_config(None, env={{}}, home={str(tmp_path / "home")!r})
        script = scripts.parse_script([{{"gather": "Press 1", "on": {{"1": "end"}}}}])
        served = scripts.serve(script, 0, machine=False, url=str)
        assert served.instructions, served
        assert automations.load_rules(Path({str(rules)!r}), scripts={{"hello"}})
    """
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    modules = loaded(result)
    assert set(PURE) <= modules
    assert among(modules, HEAVY) == []


def test_the_package_exports_its_names_on_first_use(tmp_path: Path) -> None:
    code = """
        import sys
        import dispatcher
        assert "dispatcher.service" not in sys.modules
        assert "Dispatcher" in dir(dispatcher)
        from dispatcher import Dispatcher, Lane, TextRequest, load_config
        from dispatcher.service import Dispatcher as Service
        assert Dispatcher is Service and dispatcher.Dispatcher is Service
        assert Lane.__name__ == "Lane" and TextRequest.__name__ == "TextRequest"
        assert callable(load_config)
        try:
            dispatcher.Nothing
        except AttributeError as exc:
            assert "Nothing" in str(exc)
        else:
            raise AssertionError("dispatcher.Nothing exists")
        print("ok")
    """
    result = run_python(code, tmp_path, report=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


CLIENT_COMMANDS = [
    ["ping"],
    ["status"],
    ["status", "--json"],
    ["message", "msg_1"],
    ["find", "+15550100001"],
    ["send", "--from", "+15550000001", "--to", "+15550100001", "--body", "Hi"],
    ["cancel", "msg_1"],
    ["pause", "+15550000001"],
    ["dnt", "list"],
    ["dnt", "check", "+15550100001"],
    ["dnt", "add", "+15550100001", "--reason", "asked"],
    ["consent", "check", "ann@example.com", "--channel", "email"],
    ["consent", "add", "+15550100001", "--channel", "voice"],
    ["metrics", "--since", "24h"],
    ["metrics", "--csv"],
    ["report", "--out", "report.html"],
    ["call", "place", "--from", "+15550000001", "--to", "+15550100001", "--say", "Hi"],
    ["call", "show", "call_1"],
    ["email", "send", "--from", "a@x.io", "--to", "b@x.io", "--subject", "Hi", "--text", "Hi"],
    ["email", "show", "eml_1"],
    ["campaign", "list"],
    ["top", "--once"],
]


@pytest.mark.parametrize("args", CLIENT_COMMANDS, ids=" ".join)
def test_a_client_command_loads_no_service_and_no_provider(tmp_path: Path, args: list[str]) -> None:
    result = run_cli(["--home", str(tmp_path / "home"), *args], tmp_path)
    assert result.stdout.splitlines()[0] == "exit 3", result.stdout + result.stderr
    assert "is not running" in result.stderr
    assert among(loaded(result), SERVICE_SIDE) == []


def test_version_loads_no_service_and_no_provider(tmp_path: Path) -> None:
    result = run_cli(["--version"], tmp_path)
    lines = result.stdout.splitlines()
    assert lines[:2] == [f"dispatcher {package.__version__}", "exit 0"], result.stderr
    assert among(loaded(result), SERVICE_SIDE) == []


def test_the_package_says_it_is_typed() -> None:
    assert (SOURCE_ROOT / "dispatcher" / "py.typed").is_file()
