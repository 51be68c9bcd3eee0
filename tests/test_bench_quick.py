"""The benchmark's quick mode, as a smoke check of correctness only: every runner of
ours keeps the spacing and the order, and loses nothing. No timing is asserted."""

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
    rows = json.loads(done.stdout)["pacing"]
    assert {row["runner"] for row in rows} == {"dispatcher", "heap", "throttle", "aiolimiter"}
    for row in rows:
        if row["runner"] in ("dispatcher", "heap"):
            assert row["violations"] == 0, row
            assert row["inversions"] == 0, row
        assert row["lost"] == 0, row
