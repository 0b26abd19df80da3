"""Upload caps and the spool: admission, spool bytes, a minimum rate, dead spools.

Transport-free, so every rule here is unit-tested without a server:

- `Uploads` admits a SetFile only while this process holds fewer than
  ``max_uploads`` uploads (TOO_MANY_UPLOADS, scope ``process``), and counts the
  bytes written to spool files against ``max_spool_bytes`` (SPOOL_FULL). The
  caps are per process: ``--workers N`` admits N times as many. The uploads a
  tenant may have in progress over all processes are a quota (quotas.py).
- `RateFloor` ends a stream whose every next ``min_upload_bytes`` do not arrive
  within ``upload_rate_window_seconds`` (UPLOAD_TOO_SLOW). It differs from the
  idle timeout (UPLOAD_TIMEOUT, ``upload_idle_seconds``), which ends a stream
  that sends no message at all, also before its header: a trickle of tiny
  messages never trips the idle timeout but does trip the floor.
- `ProcessSpool` gives each process its own spool directory holding a lock file
  that stays ``flock``-ed while the `ProcessSpool` lives (a server's, for the
  life of its process). The kernel drops the lock when the process dies,
  however it dies, so a starting process removes exactly the directories whose
  lock it can take; a live worker's files are never touched and a reused PID
  cannot fool it.

Not thread-safe: everything runs on the server's event loop.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

import grpc

from . import metrics
from .errors import BUSY_RETRY_SECONDS, DomainError

DISK_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
LOCK_NAME: Final = "lock"
OWNED_PREFIX: Final = "proc-"
STAGING_PREFIX: Final = ".new-"
STALE_STAGING_SECONDS: Final = 60.0


@dataclass(frozen=True, slots=True)
class UploadCaps:
    """The per-process upload caps (`Settings` holds their defaults and meaning)."""

    max_uploads: int
    max_spool_bytes: int
    min_upload_bytes: int
    upload_rate_window_seconds: float


def too_many_uploads(limit: int) -> DomainError:
    """RESOURCE_EXHAUSTED TOO_MANY_UPLOADS: the process's cap (scope ``process``)."""
    return DomainError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_UPLOADS",
        f"this server process already has {limit} uploads in progress, the limit; nothing"
        f" was stored; retry in {BUSY_RETRY_SECONDS:.0f} s",
        metadata={"scope": "process", "limit": limit},
        retry_after=BUSY_RETRY_SECONDS,
    )


def spool_full(limit: int | None = None) -> DomainError:
    """RESOURCE_EXHAUSTED SPOOL_FULL: the byte cap (``limit``) or the disk is full."""
    what = f"its {limit}-byte cap" if limit is not None else "its disk is full"
    return DomainError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "SPOOL_FULL",
        f"the server's upload spool is full ({what}); nothing was stored;"
        f" retry in {BUSY_RETRY_SECONDS:.0f} s",
        metadata={"limit": limit} if limit is not None else None,
        retry_after=BUSY_RETRY_SECONDS,
    )


class UploadSlot:
    """One admitted upload: its slot and the spool bytes it has written.

    A context manager; leaving it gives back the slot and the bytes, so leave it
    only once the spool file is removed.
    """

    __slots__ = ("_held", "_uploads", "spooled")

    def __init__(self, uploads: Uploads) -> None:
        self._uploads = uploads
        self._held = True
        self.spooled = 0

    def spool(self, size: int) -> None:
        """Count ``size`` more bytes about to be written to the spool.

        Raises:
            DomainError: SPOOL_FULL when they would pass the process's byte cap.
        """
        uploads = self._uploads
        limit = uploads.caps.max_spool_bytes
        if uploads.spool_bytes + size > limit:
            raise spool_full(limit)
        uploads.spool_bytes += size
        self.spooled += size
        metrics.UPLOAD_SPOOL_BYTES.inc(size)

    def release(self) -> None:
        """Give back the slot and the spooled bytes (once; later calls do nothing)."""
        if not self._held:
            return
        self._held = False
        self._uploads._release(self.spooled)
        self.spooled = 0

    def __enter__(self) -> UploadSlot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Uploads:
    """Counts this process's uploads and spooled bytes."""

    def __init__(self, caps: UploadCaps) -> None:
        self.caps = caps
        self.active = 0
        self.spool_bytes = 0

    def admit(self) -> UploadSlot:
        """Take one of the process's upload slots.

        Raises:
            DomainError: TOO_MANY_UPLOADS (scope ``process``).
        """
        if self.active >= self.caps.max_uploads:
            raise too_many_uploads(self.caps.max_uploads)
        self.active += 1
        metrics.UPLOADS_IN_PROGRESS.inc()
        return UploadSlot(self)

    def _release(self, spooled: int) -> None:
        self.active -= 1
        self.spool_bytes -= spooled
        metrics.UPLOADS_IN_PROGRESS.dec()
        metrics.UPLOAD_SPOOL_BYTES.dec(spooled)


class RateFloor:
    """Every next ``min_bytes`` of an upload must arrive within ``window`` seconds.

    With the upload's declared ``size``, the next step is never more than what
    is left to send, so a small file, or a file's tail, is not held to more
    bytes than it has. ``deadline`` (in the clock of the ``now`` values given)
    is when the stream is too slow unless `feed` moved it; ``None`` when the
    floor is off (``min_bytes == 0``).
    """

    __slots__ = ("_got", "_left", "_need", "deadline", "min_bytes", "window")

    def __init__(self, min_bytes: int, window: float, now: float, size: int | None = None) -> None:
        self.min_bytes = min_bytes
        self.window = window
        self.deadline: float | None = now + window if min_bytes > 0 else None
        self._got = 0
        self._left = size
        self._need = self._step()

    def _step(self) -> int:
        return self.min_bytes if self._left is None else min(self.min_bytes, self._left)

    def feed(self, size: int, now: float) -> bool:
        """Count ``size`` bytes received at ``now``; True when the deadline moved."""
        if self.deadline is None:
            return False
        self._got += size
        if self._left is not None:
            self._left = max(0, self._left - size)
        if self._got < self._need:
            return False
        self._got = 0
        self._need = self._step()
        self.deadline = now + self.window
        return True

    def too_slow(self) -> DomainError:
        """DEADLINE_EXCEEDED UPLOAD_TOO_SLOW for this floor."""
        return DomainError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "UPLOAD_TOO_SLOW",
            f"the upload sent fewer than {self.min_bytes} bytes in {self.window:g} s and was"
            " cancelled; nothing was stored",
            metadata={"limit": self.min_bytes, "window_seconds": f"{self.window:g}"},
        )


class ProcessSpool:
    """This process's spool directory under a root that several processes share.

    The directory is ``<root>/proc-<pid>-<random>`` and holds the lock file this
    process keeps ``flock``-ed. It is built under a ``.new-`` name and renamed
    into place once locked, so a ``proc-`` directory is never seen unlocked
    while its owner lives. flock (not fcntl/lockf) locks belong to the open
    file, so two servers in one process exclude each other too.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dir: Path | None = None
        self._unlock: weakref.finalize[[int], ProcessSpool] | None = None

    def directory(self) -> Path:
        """This process's spool directory, claimed on first use (and again if removed)."""
        own = self._dir
        if own is None or not own.is_dir():
            own = self._claim()
        return own

    def _claim(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.root))
        fd = os.open(staging / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            own = self.root / f"{OWNED_PREFIX}{os.getpid()}-{staging.name[len(STAGING_PREFIX) :]}"
            staging.rename(own)
        except BaseException:
            os.close(fd)
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if self._unlock is not None:
            self._unlock()  # the directory was removed under us: let its lock go
        # The lock lasts while this object does (the process, for a server); the
        # finalizer closes the descriptor exactly once.
        self._dir, self._unlock = own, weakref.finalize(self, os.close, fd)
        return own

    def remove_dead(self) -> int:
        """Remove the spool directories of dead processes; returns how many files they held.

        A ``proc-`` directory goes when its lock can be taken (its owner is dead);
        one without a lock file is left alone (it cannot be told from a live one).
        A ``.new-`` directory (its owner died while claiming it) goes after a minute.
        """
        removed = 0
        if not self.root.is_dir():
            return 0
        for path in self.root.iterdir():
            if path == self._dir:
                continue
            if path.name.startswith(STAGING_PREFIX):
                # Died while claiming: it holds no spool file, only (maybe) a lock.
                with contextlib.suppress(OSError):
                    if time.time() - path.stat().st_mtime > STALE_STAGING_SECONDS:
                        shutil.rmtree(path, ignore_errors=True)
                continue
            if not path.name.startswith(OWNED_PREFIX):
                continue
            fd = _take_lock(path / LOCK_NAME)
            if fd is None:
                continue  # its owner lives (or it has no lock file to tell)
            try:
                removed += sum(1 for p in path.iterdir() if p.name != LOCK_NAME)
                shutil.rmtree(path, ignore_errors=True)
            finally:
                os.close(fd)
        return removed


def _take_lock(path: Path) -> int | None:
    """An open, exclusively flock-ed descriptor of ``path``; None when held or missing."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
