"""``python -m sessionmemory_bench matrix --quick`` end to end: it starts Redis, SeaweedFS,
the floor and our server (one and two workers), drives every row with h2load and
minio, and prints the Markdown table the notes paste, with a row per RPC and load
level, numbers in every cell, and the same table in ``--out``.

Its figures are noise (0.3 s cells on a busy machine): this proves the command runs
and its table is complete and well formed, not how fast anything is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = [
    *(
        (rpc, n)
        for rpc in (
            "Get",
            "Set",
            "Increment",
            "Delete",
            "SetJson 1 KiB",
            "GetMany(20)",
            "List(50)",
        )
        for n in (1, 16, 64)
    ),
    ("Get, --workers 2", 16),
    ("Get, --workers 2", 64),
    ("SetFile 1 MiB (floor: put_object)", 1),
    ("ReadFile 1 MiB (floor: get_object)", 1),
]
HEADER = (
    "| RPC | in flight | ours calls/s | floor calls/s | ours/floor"
    " | ours p50 / p99 ms | floor p50 / p99 ms |"
)
NUMBER = r"\d[\d,]*(\.\d+)?"
LATENCIES = re.compile(rf"{NUMBER} / {NUMBER}")


@pytest.mark.timeout(180)
def test_the_quick_matrix_prints_a_complete_table(tmp_path: Path) -> None:
    if shutil.which("h2load") is None:
        pytest.fail("h2load is not installed: apt-get install nghttp2-client (make bench does)")
    out = tmp_path / "matrix.md"
    done = subprocess.run(
        [sys.executable, "-m", "sessionmemory_bench", "matrix", "--quick", "--out", str(out)],
        env={**os.environ, "PYTHONPATH": str(ROOT / "tools" / "bench")},
        capture_output=True, text=True, timeout=170, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Session Memory benchmark matrix: 1 interleaved round(s)")
    assert "hiredis in our server: " in lines[0]
    start = lines.index(HEADER)
    assert lines[start + 1] == "|---|---:|---:|---:|---:|---:|---:|"
    rows = lines[start + 2 : start + 2 + len(ROWS)]
    assert lines[start + 2 + len(ROWS)] == "", "more rows than the matrix has"
    for (rpc, inflight), row in zip(ROWS, rows, strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[:2] == [rpc, str(inflight)], row
        ours, floor, ratio = (float(c.replace(",", "")) for c in cells[2:5])
        assert ours > 0 and floor > 0, row
        # The ratio is a median of per-round ratios; with one round, it is this one
        # (up to the rounding of the printed calls/s).
        slack = 0.01 + ours / floor * (0.5 / ours + 0.5 / floor)
        assert abs(ratio - ours / floor) <= slack, row
        assert all(LATENCIES.fullmatch(c) for c in cells[5:7]), row
    assert "Floors (bare grpc.aio + redis.asyncio, one process): Get: one Redis GET;" in (
        done.stdout
    )
    assert "Failed calls" not in done.stdout
    assert out.read_text(encoding="utf-8") == done.stdout
