"""bench/peers.py at a tiny size: each library's real writer and streaming dataset, compared.

The peers live in a venv of their own (make's .venv-peers), named by PEERS_PYTHON, which
`make test` sets; the bench runs there as a user runs it. Nothing here is timed: the test
checks that every library wrote and read the set and that the comparison is printed.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not os.environ.get("PEERS_PYTHON"), reason="PEERS_PYTHON names no peers venv")
def test_the_bench_compares_us_with_both_peers() -> None:
    cmd = [os.environ["PEERS_PYTHON"], "-m", "bench.peers", "--episodes", "2", "--steps", "12",
           "--samples", "16", "--rounds", "1", "--no-s3"]  # fmt: skip
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for name in ("ours (vla-shards)", "litdata", "MosaicML Streaming"):
        # one write line and one read line per library, each with its figures
        rows = [line for line in lines if line.strip().startswith(name)]
        assert len(rows) == 2, result.stdout
        assert all(re.search(r"\d+\.\d+ +\d", row) for row in rows), rows
    assert "24 samples (2 episodes x 12 steps)" in lines[0]
    assert re.search(r"ours \(local\) reaches \d+% of it", result.stdout)
    assert re.fullmatch(r"ours / best peer: \d+\.\d\dx samples/s \((litdata|MosaicML Streaming)\)",
                        lines[-1]), lines[-1]  # fmt: skip
