"""The examples' contract (examples/README.md), shared by the per-language example tests.

Each language's test runs its example programs with `example_env`'s environment and
checks what they print with `check_transcript`.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FLOWS = ["registration", "cart", "pin_attempts", "receipt_upload", "agent"]
RUN_TIMEOUT = 120  # seconds for one example program


def transcript(flow: str) -> str:
    """The conversation the flow's program must print."""
    return (EXAMPLES / "transcripts" / f"{flow}.txt").read_text(encoding="utf-8")


def example_env(base: dict[str, str], address: str, api_key: str) -> dict[str, str]:
    """`base` (e.g. os.environ) with the server's address and key and a fresh session id."""
    return {
        **base,
        "SESSION_MEMORY_ADDR": address,
        "SESSION_MEMORY_API_KEY": api_key,
        "EXAMPLE_SESSION_ID": f"example-{uuid.uuid4().hex}",
    }


def check_transcript(flow: str, stdout: str) -> None:
    """Fail with a readable diff unless `stdout` is the flow's transcript exactly."""
    want = transcript(flow).splitlines()
    got = stdout.replace("\r\n", "\n").splitlines()
    assert got == want, f"{flow}: printed\n" + "\n".join(got) + "\nexpected\n" + "\n".join(want)


# A key of the right shape that no tenant holds.
WRONG_KEY = "smk_notakey_0000"


def run_example(
    argv: Sequence[str | Path],
    address: str,
    api_key: str,
    *,
    base_env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one example program against ``address`` as ``api_key``, in a fresh session."""
    return subprocess.run(
        [str(arg) for arg in argv],
        env=example_env(dict(os.environ if base_env is None else base_env), address, api_key),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def check_example(
    flow: str,
    argv: Sequence[str | Path],
    address: str,
    api_key: str,
    *,
    base_env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """The program exits 0 having printed the flow's transcript exactly."""
    done = run_example(argv, address, api_key, base_env=base_env, cwd=cwd)
    assert done.returncode == 0, f"{flow} exited {done.returncode}:\n{done.stderr}"
    check_transcript(flow, done.stdout)


def refused_line(argv: Sequence[str | Path], address: str) -> str:
    """Run the program with a wrong key: it must exit 1 with one line on stderr, returned."""
    done = run_example(argv, address, WRONG_KEY)
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()
    return line
