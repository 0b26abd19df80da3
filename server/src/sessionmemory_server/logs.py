"""Structured (JSON lines) logging for the server; never logs secrets or values."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from typing import Any

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a record."""
    return {k: v for k, v in record.__dict__.items() if k not in _RESERVED}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, pid, [worker], plus `extra=` fields."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as one JSON line."""
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        if self._worker is not None:
            out["worker"] = self._worker
        out.update(_extras(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [pid] message key=value ...``: the JSON lines' fields, for people."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as one line, its `extra=` fields as key=value pairs."""
        line = super().format(record)
        fields = _extras(record)
        if self._worker is not None:
            fields = {"worker": self._worker, **fields}
        if not fields:
            return line
        pairs = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in fields.items())
        head, sep, tail = line.partition("\n")  # a traceback stays below the fields
        return f"{head} {pairs}{sep}{tail}"


def setup(level: str, fmt: str, *, worker: int | None = None) -> None:
    """Configure the root logger once for the process.

    Every line names the process (``pid``) and, under ``--workers``, its worker
    number (``worker``, 0-based, kept by a respawned worker).
    """
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        handler.setFormatter(TextFormatter(worker))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # urllib3 warns once per discarded pooled connection, which a burst of
    # ReadFile calls from any tenant causes at will: errors only.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


class EventCounter:
    """Logs a repeated event as one WARNING line per reason per interval, with its count.

    For events a client can cause at will (calls without a valid key, undecodable
    requests): a line per event, let alone a traceback, would let one client fill
    the disk. The first event after a quiet interval is logged at once; the ones
    that follow within ``interval_seconds`` are counted and logged together when
    the interval ends (a timer on the running event loop, so a burst's tail is not
    held back until the next event). Safe to share between threads and loops.
    """

    def __init__(self, logger: logging.Logger, msg: str, *, interval_seconds: float = 10.0) -> None:
        self._log = logger
        self._msg = msg
        self._interval = interval_seconds
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self._due = float("-inf")  # when the pending counts may be logged
        self._timer = False  # a flush is scheduled on some event loop

    def count(self, reason: str) -> None:
        """Count one event; log the counts now if the interval since the last line is over."""
        now = time.monotonic()
        with self._lock:
            self._pending[reason] = self._pending.get(reason, 0) + 1
            if now < self._due:
                if not self._timer:
                    try:
                        asyncio.get_running_loop().call_later(self._due - now, self._on_timer)
                        self._timer = True
                    except RuntimeError:
                        pass  # no loop here: the next event after the interval logs them
                return
            pending = self._take(now)
        self._emit(pending)

    def _on_timer(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._timer = False
            if not self._pending:
                return  # an event already logged them
            if now < self._due:
                # Early (uvloop's timers may fire a little before their time), or
                # set before the last line: wait for the rest of the interval.
                asyncio.get_running_loop().call_later(self._due - now, self._on_timer)
                self._timer = True
                return
            pending = self._take(now)
        self._emit(pending)

    def _take(self, now: float) -> dict[str, int]:
        pending, self._pending = self._pending, {}
        self._due = now + self._interval
        self._timer = False  # a timer on a loop that has since stopped must not block new ones
        return pending

    def _emit(self, pending: dict[str, int]) -> None:
        for reason, count in pending.items():
            self._log.warning(
                self._msg,
                extra={"reason": reason, "count": count, "interval_seconds": self._interval},
            )
