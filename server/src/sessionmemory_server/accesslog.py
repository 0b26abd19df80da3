"""The access log: one structured line per call, sampled and capped so it can stay on.

Lines go to the logger ``sessionmemory_server.access`` at INFO, message ``call``, with
these fields (absent ones are left out):

=============  =============================================================
method         the RPC, e.g. ``Get``
code           the gRPC status code name, e.g. ``OK``, ``INVALID_ARGUMENT``
reason         the ErrorInfo reason of a failed call, e.g. ``VALUE_TOO_LONG``
tenant         the caller's tenant, once authenticated
session        a keyed hash of the session id (16 hex digits; blake2b keyed
               with ``log_hash_key``): the same session gives the same hash
               while the key stays the same, and the id cannot be read back
duration_ms    from the call's start to its status, in milliseconds
bytes_in       file bytes received (SetFile)
bytes_out      file bytes sent (ReadFile)
trace_id       the call's trace id (32 hex digits) when it is traced: tracing
               is on and it brought a trace context or was sampled
pid, worker    added to every line by `logs` (worker under ``--workers``)
=============  =============================================================

Never logged here: session ids, keys, values, API keys, session tokens, and the
caller's address (personal data in many jurisdictions; a proxy in front would
make it meaningless). The one server line that names an address is the
auth-failure throttle's warning, once per throttled address (an IPv6 /64) per
window: the address is what an operator must act on.

Sampling: every failed call gets a line; a successful one with probability
``access_log_sample_rate``. At most ``access_log_max_lines_per_second`` lines
are written per process (a token bucket holding one second's worth), and calls
of no known tenant (no valid key, an undecodable body) have a tenth of that in a
bucket of their own, so a keyless flood cannot crowd tenants' lines out; lines over
the cap are counted (``sessionmemory_access_log_dropped_total``) and summarized
in one throttled WARNING. With the logger above INFO nothing is formatted.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Final

from . import metrics
from .logs import EventCounter

log = logging.getLogger("sessionmemory_server.access")
_dropped = EventCounter(
    logging.getLogger("sessionmemory_server.server"),
    "access log lines dropped (over the per-second cap)",
    interval_seconds=60.0,
)

SESSION_HASH_HEX: Final = 16
# Calls of no known tenant get 1/ANONYMOUS_SHARE of the lines per second, apart.
ANONYMOUS_SHARE: Final = 10
_MAX_KEY_BYTES: Final = 64  # blake2b's key limit


class LineBudget:
    """A token bucket: ``per_second`` lines a second, up to one second's worth at once."""

    __slots__ = ("_last", "_tokens", "per_second")

    def __init__(self, per_second: int, now: float) -> None:
        self.per_second = per_second
        self._tokens = float(per_second)
        self._last = now

    def take(self, now: float) -> bool:
        """Spend one line at ``now`` (monotonic seconds); False when none is left."""
        tokens = min(self.per_second, self._tokens + (now - self._last) * self.per_second)
        self._last = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True


def session_hasher(key: bytes) -> Callable[[str], str]:
    """Keyed blake2b of session ids, 16 hex digits; a key over 64 bytes is hashed first."""
    if len(key) > _MAX_KEY_BYTES:
        key = hashlib.blake2b(key).digest()

    def digest(session_id: str) -> str:
        h = hashlib.blake2b(
            session_id.encode("utf-8", "surrogatepass"),
            key=key,
            digest_size=SESSION_HASH_HEX // 2,
        )
        return h.hexdigest()

    return digest


class AccessLog:
    """Decides which calls get a line and writes it.

    Args:
        sample_rate: Share of successful calls that get a line (0 to 1).
        max_lines_per_second: Lines per second at most.
        hash_key: Key of the session id hash.
        rng: Uniform [0, 1) source (tests pass a fixed one).
        clock: Monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        *,
        sample_rate: float,
        max_lines_per_second: int,
        hash_key: bytes,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sample_rate = sample_rate
        self._rng = rng
        self._clock = clock
        self._budget = LineBudget(max_lines_per_second, clock())
        # Calls of no known tenant (no valid key, an undecodable body) draw from a
        # budget of their own: anyone can send them, and they must not crowd the
        # tenants' lines out (they are all counted in the metrics anyway).
        self._anonymous = LineBudget(max(1, max_lines_per_second // ANONYMOUS_SHARE), clock())
        self._hash = session_hasher(hash_key)

    def wanted(self, ok: bool) -> bool:
        """Whether a call gets a line: always when it failed, else by the sample rate.

        Does not spend from the cap (`write` does).
        """
        if not ok:
            return log.isEnabledFor(logging.INFO)
        rate = self.sample_rate
        return rate > 0.0 and (rate >= 1.0 or self._rng() < rate) and log.isEnabledFor(logging.INFO)

    def write(
        self,
        method: str,
        code: str,
        seconds: float,
        *,
        reason: str | None = None,
        tenant: str | None = None,
        session_id: str | None = None,
        bytes_in: int | None = None,
        bytes_out: int | None = None,
        trace_id: str | None = None,
    ) -> bool:
        """Write one call's line unless the per-second cap is spent; True when written."""
        budget = self._budget if tenant is not None else self._anonymous
        if not budget.take(self._clock()):
            metrics.ACCESS_LOG_DROPPED.inc()
            _dropped.count("rate cap")
            return False
        fields: dict[str, Any] = {"method": method, "code": code}
        if reason:
            fields["reason"] = reason
        if tenant is not None:
            fields["tenant"] = tenant
        if session_id is not None:
            fields["session"] = self._hash(session_id)
        fields["duration_ms"] = round(seconds * 1000, 3)
        if bytes_in is not None:
            fields["bytes_in"] = bytes_in
        if bytes_out is not None:
            fields["bytes_out"] = bytes_out
        if trace_id is not None:
            fields["trace_id"] = trace_id
        log.info("call", extra=fields)
        return True
