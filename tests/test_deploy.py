"""The deployment files: the Dockerfile (a non-root user, the home folder a volume, a
health check on /healthz, the uv the scripts pin; built and run where a Docker daemon
answers, linted where hadolint is installed) and the systemd unit (verified by
systemd-analyze, with its hardening)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "deploy" / "dispatcher.service"
DEADLINE = 600


def instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    found = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(parts[0].upper(), parts[1] if len(parts) > 1 else "") for parts in found]


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last = max(i for i, (name, _) in enumerate(steps) if name == "FROM")
    return steps[last:]


def test_the_image_runs_as_a_user_with_its_home_a_volume_and_a_health_check() -> None:
    stage = final_stage(DOCKERFILE)
    names = [name for name, _ in stage]
    [user] = [args for name, args in stage if name == "USER"]
    assert user not in {"root", "0"}
    assert names.index("USER") < names.index("CMD")
    env = " ".join(args for name, args in stage if name == "ENV")
    home = re.search(r"DISPATCHER_HOME=(\S+)", env)
    assert home is not None
    assert [args for name, args in stage if name == "VOLUME"] == [f'["{home[1]}"]']
    [check] = [args for name, args in stage if name == "HEALTHCHECK"]
    port = re.search(r"DISPATCHER_HTTP_LISTEN=\S+:(\d+)", env)
    assert port is not None
    assert f"http://127.0.0.1:{port[1]}/healthz" in check
    assert [args for name, args in stage if name == "EXPOSE"] == [port[1]]


def test_the_image_installs_the_lock_with_the_uv_the_scripts_pin() -> None:
    pinned = re.search(r'^UV_VERSION="([^"]+)"', (ROOT / "scripts" / "_env.sh").read_text(),
                       re.MULTILINE)  # fmt: skip
    assert pinned is not None
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert f"UV_VERSION={pinned[1]}" in text
    syncs = [args for name, args in instructions(DOCKERFILE) if name == "RUN" and "uv sync" in args]
    assert syncs
    assert all("--frozen" in run and "--no-dev" in run for run in syncs)


def test_the_unit_is_valid_and_hardened(tmp_path: Path) -> None:
    unit = UNIT.read_text(encoding="utf-8")
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] != "#"
    )
    assert settings["User"] == "dispatcher"
    assert settings["ExecStart"] == "/opt/dispatcher/bin/dispatcher serve"
    assert settings["StateDirectory"] == "dispatcher"
    assert settings["StateDirectoryMode"] == "0700"
    for key, value in {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes",
        "SystemCallFilter": "@system-service",
    }.items():  # fmt: skip
        assert settings[key] == value, key
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax is not verified")
    # The unit names the installed command; verify it with one that exists here.
    copy = tmp_path / "dispatcher.service"
    python = Path(shutil.which("python3") or "/usr/bin/python3")
    copy.write_text(unit.replace("/opt/dispatcher/bin/dispatcher", str(python)), "utf-8")
    verified = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr.strip() == "", verified.stderr


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed")
def test_the_dockerfile_passes_hadolint() -> None:
    linted = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert linted.returncode == 0, linted.stdout


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    info = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return info.returncode == 0


@pytest.mark.skipif(not _docker_answers(), reason="no Docker daemon answers here")
def test_the_image_builds_refuses_without_a_token_and_answers_healthz() -> None:
    tag = "dispatcher-test:latest"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=DEADLINE)
    refused = subprocess.run(["docker", "run", "--rm", tag], capture_output=True, text=True,
                             timeout=120, check=False)  # fmt: skip
    assert refused.returncode == 2
    assert "DISPATCHER_API_TOKEN" in refused.stderr
    port = free_port()
    started = subprocess.run(
        ["docker", "run", "-d", "--rm", "-e", "DISPATCHER_API_TOKEN=test-token",
         "-p", f"127.0.0.1:{port}:8080", tag],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    container = started.stdout.strip()
    try:
        deadline = time.monotonic() + 120
        while not _healthy(f"http://127.0.0.1:{port}/healthz"):
            assert time.monotonic() < deadline, "the container's /healthz never answered"
            time.sleep(0.2)  # a poll's interval, bounded by the deadline
    finally:
        subprocess.run(["docker", "stop", "--time", "30", container], timeout=120, check=False)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - loopback
            return bool(answer.status == 200)
    except OSError:
        return False
