"""Supervised workers: ``session-memory serve --workers N``.

The parent process serves no calls. It spawns N worker processes that share the
port (SO_REUSEPORT) and watches them (their sentinels) and its signals:

- A worker that exits while the server is not shutting down is logged at ERROR
  (``worker died``, or ``worker failed to start`` when it exited before
  serving) and a new one takes its number after a back-off (`Restarts`: 0.5 s,
  doubling to 30 s; back to 0.5 s once a worker stayed up 60 s).
- When every worker failed to start `GIVE_UP_AFTER` times in a row (a bad TLS
  file, the port taken by another program), it stops trying and exits 1.
- SIGTERM or SIGINT is forwarded to every worker, which drains its calls; one
  still running ``grace_seconds`` + `DRAIN_MARGIN_SECONDS` later is killed.
  A second SIGINT kills them at once. Then the parent exits 0.
- Workers leave when the parent is gone (killed with SIGKILL): the kernel sends
  them SIGTERM (Linux's PR_SET_PDEATHSIG) and, everywhere, they notice their
  parent changed within `WATCH_SECONDS`; either way they drain and exit.

Readiness (`Readiness.require_workers`): each worker reads how many of the N
serve from memory shared with the parent, and reports
``sessionmemory.v1.MemoryService`` NOT_SERVING while fewer than N do: the pod
was sized for N, and a worker that keeps crashing must show. Liveness (``""``)
stays SERVING: the parent already replaces dead workers.

With ``metrics_listen`` set, the parent serves /metrics for all workers
(Prometheus' multiprocess mode, files in a private temporary directory) and the
workers open no endpoint of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, Protocol

from . import logs
from .config import Settings

if TYPE_CHECKING:
    from .readiness import Readiness

log = logging.getLogger("sessionmemory_server.supervisor")

INITIAL_DELAY_SECONDS: Final = 0.5
MAX_DELAY_SECONDS: Final = 30.0
# A worker that served this long was healthy: the next one starts after the initial delay.
STABLE_AFTER_SECONDS: Final = 60.0
# Every worker exited this many times in a row before serving: give up.
GIVE_UP_AFTER: Final = 3
# What stopping a worker may take beyond the calls' grace: closing Redis, the
# change feed and the object store's pool, each bounded by its own timeout.
DRAIN_MARGIN_SECONDS: Final = 5.0
# How often a worker looks at its parent and its siblings, and proves it is alive.
WATCH_SECONDS: Final = 0.25
# A serving worker whose event loop has not beaten for this long is stuck (stopped,
# deadlocked, blocked): it no longer counts as serving and the supervisor kills it
# (SIGKILL), which respawns it. Connections the kernel gives it would hang otherwise.
STALL_SECONDS: Final = 5.0
# The supervisor looks for stalled workers at least this often.
STALL_CHECK_SECONDS: Final = 1.0
# Signals that stop the server like SIGTERM (SIGHUP: the terminal went away).
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
METRICS_DIR_PREFIX: Final = "session-memory-metrics-"

_PR_SET_PDEATHSIG: Final = 1


@dataclass
class Restarts:
    """When to start the next worker of one worker number: pure logic, no clock of its own.

    Each exit doubles the delay from ``initial`` up to ``maximum``; a worker that
    stayed up ``stable_after`` seconds resets it. Exits before serving are
    counted apart (`start_failures`) for the give-up rule.
    """

    initial: float = INITIAL_DELAY_SECONDS
    maximum: float = MAX_DELAY_SECONDS
    stable_after: float = STABLE_AFTER_SECONDS
    failures: int = 0
    start_failures: int = 0

    def exited(self, *, uptime: float, served: bool) -> float:
        """Record that a worker exited after ``uptime`` seconds; the delay before the next one."""
        if uptime >= self.stable_after:
            self.failures = 0
        # The exponent's cap only keeps the float finite; the delay caps long before.
        delay = min(self.initial * 2.0 ** min(self.failures, 32), self.maximum)
        self.failures += 1
        self.start_failures = 0 if served else self.start_failures + 1
        return delay


def should_give_up(restarts: Sequence[Restarts], limit: int = GIVE_UP_AFTER) -> bool:
    """True when every worker number's last ``limit`` workers exited before serving."""
    return bool(restarts) and all(r.start_failures >= limit for r in restarts)


@dataclass(frozen=True)
class WorkerLink:
    """What a worker knows of its supervisor; pickled into the worker at spawn.

    ``states`` holds one int per worker number: 0 while it does not serve, its
    pid while it serves, minus its pid while it drains. Workers set their own
    entry; the parent clears the entry of a worker that exited. No lock: each
    entry is one aligned int with one writer at a time, and a worker killed
    while holding a lock would block everyone else.
    """

    number: int
    workers: int
    supervisor_pid: int
    states: ctypes.Array[ctypes.c_int]
    # One per worker number: time.monotonic() (system-wide on Linux) of its last beat.
    beats: ctypes.Array[ctypes.c_double]

    def attach(self) -> None:
        """First thing in the worker: get SIGTERM when the parent dies (Linux)."""
        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:
            return  # elsewhere, `run` notices the new parent within WATCH_SECONDS
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    def serving(self) -> int:
        """How many workers serve now (this one included)."""
        now = time.monotonic()
        return sum(
            1
            for i in range(len(self.states))
            if self.states[i] > 0 and now - self.beats[i] < STALL_SECONDS
        )

    def parent_gone(self) -> bool:
        """The parent exited (this process was handed to another parent)."""
        return os.getppid() != self.supervisor_pid

    async def run(self, readiness: Readiness, stop: asyncio.Event) -> None:
        """While the worker serves: count it, make readiness follow the others, mind the parent.

        Returns once ``stop`` is set (a signal, or the parent is gone).
        """
        pid = os.getpid()
        self.beats[self.number] = time.monotonic()
        self.states[self.number] = pid
        try:
            await readiness.require_workers(self.serving, self.workers)
            seen = self.serving()
            while not stop.is_set() and not self.parent_gone():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(WATCH_SECONDS):  # see Poller._run
                        await stop.wait()
                self.beats[self.number] = time.monotonic()  # the event loop runs
                now = self.serving()
                if now != seen and not stop.is_set():
                    seen = now
                    readiness.nudge()
            # Also after a signal: PR_SET_PDEATHSIG's SIGTERM is how most workers learn it.
            if self.parent_gone():
                log.warning(
                    "supervisor gone; shutting down", extra={"supervisor_pid": self.supervisor_pid}
                )
                stop.set()
        finally:
            self.states[self.number] = -pid


@dataclass
class _Slot:
    """One worker number: its process (None while waiting to respawn) and its restarts."""

    number: int
    restarts: Restarts = field(default_factory=Restarts)
    proc: SpawnProcess | None = None
    started: float = 0.0
    due: float | None = 0.0  # when to start the next worker (None: not to)
    spawned: int = 0


class _Endpoint(Protocol):
    def close(self) -> None: ...


Target = Callable[[Settings, WorkerLink], None]


class Supervisor:
    """Runs ``settings.workers`` workers until a signal (see the module doc)."""

    def __init__(self, settings: Settings, target: Target) -> None:
        self._settings = settings
        self._target = target
        self._ctx = multiprocessing.get_context("spawn")
        # Raw (lock-free) shared memory: see WorkerLink.
        self._states: ctypes.Array[ctypes.c_int] = self._ctx.RawArray(
            ctypes.c_int, settings.workers
        )
        self._beats: ctypes.Array[ctypes.c_double] = self._ctx.RawArray(
            ctypes.c_double, settings.workers
        )
        self._slots = [_Slot(i) for i in range(settings.workers)]
        self._signals: list[int] = []
        self._wake_r = self._wake_w = -1
        self._metrics_dir: Path | None = None
        self._metrics: _Endpoint | None = None
        self._worker_settings = settings

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT (exit status 0) or no worker can start (1)."""
        previous = self._install_signals()
        try:
            self._start_metrics()
            log.info(
                "supervising",
                extra={
                    "workers": self._settings.workers,
                    "listen": self._settings.listen,
                    "grace_seconds": self._settings.grace_seconds,
                },
            )
            status = self._supervise()
            # Workers drain on SIGTERM and SIGINT; any other stop signal becomes SIGTERM.
            first = self._signals[0] if self._signals else signal.SIGTERM
            self._shutdown(signal.SIGINT if first == signal.SIGINT else signal.SIGTERM)
            log.info("stopped", extra={"exit_status": status})
            return status
        finally:
            for slot in self._slots:  # only if _shutdown itself failed
                if slot.proc is not None and slot.proc.exitcode is None:
                    slot.proc.kill()
                    slot.proc.join(5)
            self._stop_metrics()
            self._restore_signals(previous)

    # The loop.

    def _supervise(self) -> int:
        while not self._signals:
            now = time.monotonic()
            for slot in self._slots:
                if slot.proc is None and slot.due is not None and slot.due <= now:
                    self._spawn(slot)
            dues = [s.due for s in self._slots if s.proc is None and s.due is not None]
            timeout = max(0.0, min(dues) - time.monotonic()) if dues else STALL_CHECK_SECONDS
            self._wait(min(timeout, STALL_CHECK_SECONDS))
            if self._signals:
                break
            self._kill_stalled()
            for slot in self._slots:
                if slot.proc is not None and slot.proc.exitcode is not None:
                    self._died(slot)
            if should_give_up([s.restarts for s in self._slots]):
                log.error(
                    f"no worker could start: each of the {len(self._slots)} workers exited"
                    f" {GIVE_UP_AFTER} times in a row before serving (see their errors above);"
                    " giving up",
                    extra={"workers": len(self._slots), "attempts": GIVE_UP_AFTER},
                )
                return 1
        log.info(
            "shutting down",
            extra={
                "signal": _signal_name(self._signals[0]),
                "grace_seconds": self._settings.grace_seconds,
            },
        )
        return 0

    def _spawn(self, slot: _Slot) -> None:
        link = WorkerLink(slot.number, len(self._slots), os.getpid(), self._states, self._beats)
        proc = self._ctx.Process(
            target=self._target,
            args=(self._worker_settings, link),
            name=f"session-memory-worker-{slot.number}",
        )
        proc.start()
        slot.proc, slot.started, slot.due = proc, time.monotonic(), None
        slot.spawned += 1
        log.info(
            "worker started",
            extra={"worker": slot.number, "worker_pid": proc.pid, "restarts": slot.spawned - 1},
        )

    def _kill_stalled(self) -> None:
        """SIGKILL every serving worker whose event loop stopped beating (see STALL_SECONDS)."""
        now = time.monotonic()
        for slot in self._slots:
            proc = slot.proc
            if proc is None or proc.pid is None or proc.exitcode is not None:
                continue
            if self._states[slot.number] != proc.pid:
                continue  # not serving yet, or draining: its own timeouts apply
            silent = now - self._beats[slot.number]
            if silent >= STALL_SECONDS:
                log.error(
                    "worker stalled; killing it",
                    extra={
                        "worker": slot.number,
                        "worker_pid": proc.pid,
                        "silent_seconds": round(silent, 1),
                    },
                )
                proc.kill()  # its exit is logged and it is respawned as any death

    def _died(self, slot: _Slot) -> None:
        """A worker exited while the server is not shutting down: log it, schedule the next."""
        pid, exit_fields, served = self._reap(slot)
        uptime = time.monotonic() - slot.started
        # Killed by a signal (the OOM killer, an operator) is not a failure to start:
        # it only lengthens the back-off, it never makes the supervisor give up.
        killed = "signal" in exit_fields
        delay = slot.restarts.exited(uptime=uptime, served=served or killed)
        slot.due = time.monotonic() + delay
        log.error(
            "worker died" if served else "worker failed to start",
            extra={
                "worker": slot.number,
                "worker_pid": pid,
                **exit_fields,
                "uptime_seconds": round(uptime, 3),
                "respawn_in_seconds": delay,
            },
        )

    def _reap(self, slot: _Slot) -> tuple[int, dict[str, Any], bool]:
        """Forget an exited worker: its pid, how it exited, whether it had served."""
        proc = slot.proc
        assert proc is not None and proc.pid is not None and proc.exitcode is not None
        pid, code = proc.pid, proc.exitcode
        served = abs(self._states[slot.number]) == pid
        if served:
            self._states[slot.number] = 0
        proc.close()  # its sentinel descriptor: respawns must not leak them
        slot.proc = None
        if self._metrics is not None:
            from . import metrics  # noqa: PLC0415 - only with metrics on

            metrics.worker_died(pid)
        how: dict[str, Any] = {"exit_code": code} if code >= 0 else {"signal": _signal_name(-code)}
        return pid, how, served

    # Shutdown.

    def _shutdown(self, signum: int) -> None:
        """Forward ``signum`` to every worker, wait for them to drain, kill stragglers."""
        for slot in self._slots:
            slot.due = None
            # A pid is signalled only before its exit is collected: until then the
            # kernel cannot give it to another process.
            if slot.proc is not None and slot.proc.exitcode is None and slot.proc.pid is not None:
                os.kill(slot.proc.pid, signum)
        handled = len(self._signals)
        deadline = time.monotonic() + self._settings.grace_seconds + DRAIN_MARGIN_SECONDS
        forced = False
        while not forced and any(s.proc is not None for s in self._slots):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wait(left)
            forced = signal.SIGINT in self._signals[handled:]
            handled = len(self._signals)
            for slot in self._slots:
                if slot.proc is not None and slot.proc.exitcode is not None:
                    pid, how, _ = self._reap(slot)
                    log.info(
                        "worker stopped", extra={"worker": slot.number, "worker_pid": pid, **how}
                    )
        for slot in self._slots:
            proc = slot.proc
            if proc is None:
                continue
            if proc.exitcode is None:
                log.warning(
                    "worker killed: a second interrupt"
                    if forced
                    else "worker killed: still running after the grace period",
                    extra={"worker": slot.number, "worker_pid": proc.pid},
                )
                proc.kill()
                proc.join(DRAIN_MARGIN_SECONDS)
            if proc.exitcode is not None:
                self._reap(slot)

    # Signals: handlers only record them; the wakeup descriptor ends the wait.

    def _install_signals(self) -> dict[signal.Signals, Any]:
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        self._wake_r = read
        self._wake_w = write
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        return previous

    def _restore_signals(self, previous: dict[signal.Signals, Any]) -> None:
        signal.set_wakeup_fd(-1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _wait(self, timeout: float | None) -> None:
        """Until a worker exits, a signal arrives or ``timeout`` seconds pass."""
        sentinels: list[int] = [s.proc.sentinel for s in self._slots if s.proc is not None]
        wait([*sentinels, self._wake_r], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass

    # Metrics: one endpoint in the parent for every worker's files.

    def _start_metrics(self) -> None:
        listen = self._settings.metrics_listen
        if listen is None:
            return
        from . import metrics  # noqa: PLC0415 - only with metrics on

        _remove_stale_metrics_dirs(Path(tempfile.gettempdir()))
        self._metrics_dir = Path(tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-"))
        metrics.prepare_multiprocess(self._metrics_dir)
        self._metrics = metrics.serve_metrics(listen, multiprocess=True)
        self._worker_settings = self._settings.model_copy(update={"metrics_listen": None})

    def _stop_metrics(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self._metrics_dir is not None:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
            self._metrics_dir = None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:  # a real-time signal without a name of its own
        return f"signal {signum}"


def supervise(settings: Settings, target: Target) -> int:
    """Run ``target(settings, link)`` in ``settings.workers`` supervised processes.

    Returns:
        The exit status: 0 after SIGTERM/SIGINT, 1 when no worker could start.
    """
    _open_standard_descriptors()
    logs.setup(settings.log_level, settings.log_format)
    return Supervisor(settings, target).run()


def _open_standard_descriptors() -> None:
    """Open /dev/null on a closed stdin, stdout or stderr.

    Otherwise the next descriptor opened (the workers' shared memory) would take
    its number, and a stray print would write into it.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _remove_stale_metrics_dirs(tmp: Path) -> None:
    """Remove metrics directories of supervisors that died without cleaning up.

    A directory is named after its supervisor's pid; it is stale when that
    process is gone, or is this one (a container restarted with the same pid).
    """
    for path in tmp.glob(f"{METRICS_DIR_PREFIX}*-*"):
        pid_text = path.name[len(METRICS_DIR_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        alive = pid != os.getpid()
        if alive:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive = False
            except PermissionError:
                pass  # someone else's process: not ours to judge
        if not alive:
            shutil.rmtree(path, ignore_errors=True)
