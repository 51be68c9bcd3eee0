"""The scale-out benchmark (``benchmarks/fleet.py``) at small sizes: a run cut short
still prints and saves every row it measured, the row in progress marked so, and a row
that fails keeps its counts. No timing is asserted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.run import _saved

pytestmark = pytest.mark.acceptance

SIZES = {"busy": 200, "busy_texts": 5, "numbers": 4, "texts": 6, "every": 3.0, "down": 1.0,
         "db_down": 2.0, "clients": 4, "seconds": 3, "faults": []}  # fmt: skip
ONE = "200 busy numbers x 5, 1 worker(s)"
TWO = "200 busy numbers x 5, 2 worker(s)"
WITHIN = 240.0  # seconds for the benchmark to reach the second row, or to end


@pytest.fixture
def scratch() -> Iterator[Path]:
    """The benchmark's temporary folder (its cluster's, its workers' homes), which
    the database server's user may enter (pytest's own folders are the tests' only)."""
    with tempfile.TemporaryDirectory(prefix="bench-test-") as folder:
        Path(folder).chmod(0o755)
        yield Path(folder)


def _env(scratch: Path) -> dict[str, str]:
    """The benchmark's own temporary folders under ``scratch``."""
    return {**os.environ, "TMPDIR": str(scratch)}


def _sending(scratch: Path, row: str) -> bool:
    """Whether a worker of the row whose homes are in ``row`` logged a send yet."""
    return any(path.stat().st_size > 0 for path in
               scratch.glob(f"bench-fleet-*/{row}/w*/simulator-sends.jsonl"))  # fmt: skip


@pytest.mark.timeout(300)
def test_a_run_cut_short_prints_and_saves_every_row_so_far(scratch: Path) -> None:
    """^C (SIGINT) while the 2-worker row sends: the 1-worker row whole, the 2-worker
    row as far as it got, marked cut short, in the printed figures, the report and the
    results file (which a rerun measures again)."""
    results, report = scratch / "rows.jsonl", scratch / "report.md"
    bench = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "scale-out",
         "--workers", "1,2", "--faults", "none", "--json", "--results", str(results),
         "--out", str(report)],
        env=_env(scratch), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + WITHIN
        while not _sending(scratch, "busy-2"):
            assert bench.poll() is None, bench.communicate()
            assert time.monotonic() < deadline, "the 2-worker row never sent"
            time.sleep(0.05)
        bench.send_signal(signal.SIGINT)
        out, err = bench.communicate(timeout=WITHIN)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.communicate()
    assert bench.returncode == 1, err
    row = json.loads(out)["scale-out"]
    assert row["cut short"].startswith("SIGINT; the workload: SIGTERM after"), json.dumps(row)
    assert row[f"{ONE}: texts sent / accepted"] == "1,000 / 1,000", row
    assert row[f"{ONE}: spacing violations / inversions / sent twice"] == "0 / 0 / 0", row
    assert row[f"{ONE}: sends/s (10%-90%)"] > 0, row
    assert row[f"{ONE}: sends per worker"] == "worker 0: 1,000", row
    assert row[f"{ONE}: statements per send (top level)"] > 0, row
    assert f"{ONE}: cut short" not in row, row
    assert row[f"{TWO}: cut short"].startswith("SIGTERM after"), row
    _kept(row, TWO)
    sent, accepted = row[f"{TWO}: texts sent / accepted"].split(" / ")
    assert 0 < int(sent.replace(",", "")) < int(accepted.replace(",", "")) == 1_000, row

    written = report.read_text()
    assert "**Cut short** (SIGINT" in written
    assert f"| {TWO}: cut short | SIGTERM after" in written
    assert f"| {TWO}: texts sent / accepted | {sent} / 1,000 |" in written
    saved = [json.loads(line)["row"] for line in results.read_text().splitlines()]
    assert [r["cut short"] for r in saved] == [row["cut short"]]
    assert _saved(results) == {}, "a row cut short is measured again"


@pytest.mark.timeout(300)
def test_a_row_past_its_limit_keeps_its_counts(scratch: Path) -> None:
    """A row whose texts cannot all be final in time (5 texts a number take 4 s at
    least) fails saying so, with what it measured; the run goes on and ends."""
    spec = {**SIZES, "workers": [1], "within": 1.0}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.fleet", json.dumps(spec)], env=_env(scratch),
        capture_output=True, text=True, timeout=WITHIN, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout.splitlines()[-1])
    assert "not every text reached a final status within 1.0 s" in row[f"{ONE}: failed"], row
    assert "cut short" not in row, row
    _kept(row, ONE)
    assert "Queued" in row[f"{ONE}: texts by status"], row


def _kept(row: dict[str, Any], name: str) -> None:
    """What a row that did not finish keeps: its sends, its breaches, its statements."""
    for figure in ("texts sent / accepted", "spacing violations / inversions / sent twice",
                   "`leases.lost` log lines", "texts by status", "sends per worker",
                   "statements (top level) / transactions run"):  # fmt: skip
        assert f"{name}: {figure}" in row, (figure, row)
    assert row[f"{name}: spacing violations / inversions / sent twice"] == "0 / 0 / 0", row
    statements, _ = row[f"{name}: statements (top level) / transactions run"].split(" / ")
    assert int(statements.replace(",", "")) > 0, row
