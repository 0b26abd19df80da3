"""The examples' contract (examples/README.md), shared by the per-language example tests.

Each language's test runs its example programs with `example_env`'s environment and
checks what they print with `check_transcript`.
"""

from __future__ import annotations

import uuid
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
