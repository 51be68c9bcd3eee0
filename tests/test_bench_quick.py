"""The benchmark's quick mode, as a smoke check of correctness only: every part runs
and measures every figure; every runner of ours keeps the spacing and the order, and
loses nothing. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.timeout(300)
def test_quick_benchmark_keeps_spacing_and_order() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    rows = results["pacing"]
    assert {row["runner"] for row in rows} == {"dispatcher", "heap", "throttle", "aiolimiter"}
    for row in rows:
        if row["runner"] in ("dispatcher", "heap"):
            assert row["violations"] == 0, row
            assert row["inversions"] == 0, row
        assert row["lost"] == 0, row
        assert row["cpu_per_1k"] > 0, row

    sustained = {row["runner"]: row for row in results["sustained"]}
    assert set(sustained) == {"dispatcher", "heap"}
    for row in sustained.values():
        assert (row["violations"], row["inversions"], row["lost"]) == (0, 0, 0), row
        assert row["sustained_per_s"] > 0, row

    for row in results["campaigns"]:
        assert "failed" not in row, why(row, done.stderr)
        assert (row["violations"], row["lost"]) == (0, 0), row

    ingest = results["ingest"]
    assert "failed" not in ingest, why(ingest, done.stderr)
    assert ingest["ingest_per_s"] > 0
    assert ingest["cpu_us_per_contact"] > 0
    assert ingest["writer_rss_mib"] > 0

    scenario = results["scenario"]
    assert "failed" not in scenario, why(scenario, done.stderr)
    figures = (
        "restart: start to every number sending (s)",
        "socket `status` p99 (ms)",
        "HTTP submissions over 16 connections, /s",
        "HTTP submission p99 (ms)",
        "the SQLite writer process's RSS with 2,000 queued, pacing (MiB)",
    )
    for figure in figures:
        assert scenario[figure] > 0, (figure, scenario)

    email = results["email"]
    assert "failed" not in email, why(email, done.stderr)
    assert email["lost"] == 0, email
    assert email["ceiling_per_s"] > 0, email
    assert email["service_per_s"] > 0, email


def why(row: dict[str, object], stderr: str) -> str:
    """A failed part's reason and the end of what the benchmark's workloads printed
    (their tracebacks), which the row alone does not show."""
    return f"{row.get('part', row)}: {row.get('failed')}\n{stderr[-3000:]}"
