"""Independent tool jobs on Dask, for ``asqhw synth`` and ``asqhw conform --rtl``.

A :class:`JobRunner` submits tasks to ``dask.distributed``: by default to a local
cluster inside this process, whose ``jobs`` threads each run one task at a time (a
task starts its own tool subprocess); with a scheduler address (``--scheduler`` or
``$ASQHW_SCHEDULER``) to the user's running cluster. Tasks take their inputs as
values and return their results as values, so workers need no shared file system:
the client alone writes output files and the result cache (a worker keeps only what
belongs to its machine: compiled Verilator simulators). Dask gives a task whose worker dies
to another worker; a task that fails for good comes back as an :class:`Outcome` with
a one-line ``error``, and the sweep goes on.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from asqhw.core.errors import UserError
from asqhw.core.validate import check_int

__all__ = ["ENV", "TIMEOUT_ENV", "default_timeout", "probe_scheduler", "Outcome", "JobRunner", "scheduler_address",
           "describe_failure", "check_jobs"]

#: Environment variable naming the scheduler when ``--scheduler`` is not given.
ENV = "ASQHW_SCHEDULER"
#: Environment variable: seconds to wait for a scheduler to answer (default 10).
TIMEOUT_ENV = "ASQHW_DASK_TIMEOUT"


def default_timeout() -> float:
    """``$ASQHW_DASK_TIMEOUT`` seconds (0.1..3600), else 10."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return 10.0
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.1 <= value <= 3600:
        raise UserError(f"${TIMEOUT_ENV} must be seconds in 0.1..3600, not {text[:40]!r}")
    return value


@dataclass
class Outcome:
    """What came back for one task.

    Attributes
    ----------
    tag : object
        The ``tag`` given to :meth:`JobRunner.submit`.
    value : object
        The task's return value (None on failure).
    error : str or None
        One line on why the task failed (its exception, or its worker died), else None.
    """

    tag: Any
    value: Any = None
    error: str | None = None


_ADDRESS = re.compile(r"(?:tcp://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252}):([0-9]{1,5})\Z")
#: Loggers that Dask, tornado and asyncio report a lost connection on, with tracebacks.
_LOGGERS = ("distributed", "tornado", "asyncio")


def scheduler_address(scheduler: str | None = None) -> str | None:
    """``scheduler``, else ``$ASQHW_SCHEDULER``, else None (the local in-process cluster).

    The address must be ``tcp://HOST:PORT`` (or ``HOST:PORT``) with a port in 1..65535;
    it is returned as ``tcp://HOST:PORT``.
    """
    address = scheduler if scheduler is not None else os.environ.get(ENV)
    if address is None or not address.strip():
        if scheduler is not None:
            raise UserError("scheduler address is empty; expected e.g. tcp://HOST:8786")
        return None
    address = address.strip()
    m = _ADDRESS.match(address)
    if m is None or not 1 <= int(m.group(2)) <= 65535:
        raise UserError(f"scheduler address {address[:80]!r} is not tcp://HOST:PORT (port 1..65535)")
    return f"tcp://{m.group(1)}:{int(m.group(2))}"


def _quiet_loggers() -> list:
    """The loggers of :data:`_LOGGERS` and every child logger that has its own level
    (Dask's logging config gives ``distributed.client`` and others theirs)."""
    names = set(_LOGGERS) | {name for name in logging.root.manager.loggerDict
                             if name.split(".")[0] in _LOGGERS}
    return [logging.getLogger(name) for name in sorted(names)]


def _recv_exact(sock, n: int, deadline: float) -> bytes:
    out = bytearray()
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionResetError("the peer closed the connection")
        out += chunk
    return bytes(out)


def probe_scheduler(address: str, timeout: float) -> None:
    """Check within ``timeout`` seconds that a Dask scheduler answers at ``address``.

    A Dask server sends its handshake message as soon as it accepts a connection: a
    length-prefixed frame list. Dask itself waits for it without a time limit, so a peer
    that accepts and never speaks, random bytes or an HTTP server on the port would hang
    or crash it; this reads that first message itself, with a deadline and bounds.

    Raises
    ------
    UserError
        Naming the address and what went wrong, in one line.
    """
    host, port = address[len("tcp://"):].rsplit(":", 1)
    host = host.strip("[]")
    where = f"the Dask scheduler at {address}"
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except (TimeoutError, socket.timeout):
        raise UserError(f"cannot connect to {where} (no answer within {timeout:g} s)") from None
    except OSError as e:
        raise UserError(f"cannot connect to {where} ({e.strerror or type(e).__name__})") from None
    try:
        with sock:
            head = _recv_exact(sock, 8, deadline)
            if head[:4] in (b"HTTP", b"<!DO", b"<htm", b"SSH-"):
                raise UserError(f"{address} is not a Dask scheduler (it answered {head[:4].decode()}...)")
            (size,) = struct.unpack("<Q", head)
            if not 16 <= size <= 1 << 20:
                raise UserError(f"{address} is not a Dask scheduler (its first message is not a Dask frame)")
            body = _recv_exact(sock, size, deadline)
            (frames,) = struct.unpack_from("<Q", body)
            if not 1 <= frames <= 64 or 8 + 8 * frames > size or any(
                    n > 1 << 24 for n in struct.unpack_from(f"<{frames}Q", body, 8)):
                raise UserError(f"{address} is not a Dask scheduler (its first message is not a Dask frame)")
    except (TimeoutError, socket.timeout):
        raise UserError(f"{where} accepted the connection but did not answer within {timeout:g} s "
                        f"(not a Dask scheduler, or hung)") from None
    except OSError as e:
        raise UserError(f"{where} dropped the connection ({e.strerror or e})") from None


def check_jobs(jobs) -> None:
    """UserError unless ``jobs`` is an integer in 1..64."""
    check_int("jobs", jobs, 1, 64)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe_failure(exc: BaseException) -> str:
    """One line on a task's exception; a worker death names itself as such."""
    name = type(exc).__name__
    if name == "KilledWorker":
        tries = getattr(exc, "allowed_failures", None)
        last = getattr(getattr(exc, "last_worker", None), "address", None)
        return (f"its worker died while running it{f', {tries + 1} times' if tries is not None else ''}"
                f"{f' (last on {last})' if last else ''}")
    if name in ("CancelledError", "FutureCancelledError"):
        return f"cancelled by the Dask scheduler ({_one_line(exc) or 'lost connection?'})"
    if isinstance(exc, UserError):
        return _one_line(str(exc).split("\n")[0])
    return f"{name}: {_one_line(exc)}"


class JobRunner:
    """A Dask client for one sweep; use it as a context manager.

    Parameters
    ----------
    jobs : int
        Threads of the local cluster (tasks at the same time); ignored with a scheduler,
        where the cluster's workers decide.
    scheduler : str or None
        Address of a running Dask scheduler (``tcp://HOST:PORT``); None takes
        ``$ASQHW_SCHEDULER``, and without it the local in-process cluster.
    connect_timeout : float or None
        Seconds to wait for the scheduler, and for its first worker (None:
        ``$ASQHW_DASK_TIMEOUT``, else 10).

    Raises
    ------
    UserError
        If ``jobs`` is out of range, ``distributed`` is not installed or the scheduler
        cannot be reached.
    """

    def __init__(self, jobs: int = 1, scheduler: str | None = None, *,
                 connect_timeout: float | None = None):
        check_jobs(jobs)
        self.address = scheduler_address(scheduler)
        self.remote = self.address is not None
        self._timeout = default_timeout() if connect_timeout is None else connect_timeout
        try:
            from distributed import Client, as_completed
        except ImportError:
            raise UserError("dask.distributed is not installed; pip install distributed") from None
        # Dask's own log lines (cluster start, workers joining, a lost worker) would
        # interleave with the progress lines: only errors pass while the runner lives.
        # A lost scheduler makes Dask, tornado and asyncio log tracebacks: nothing below
        # CRITICAL passes while the runner lives (its own errors come back as Outcomes).
        self._logs = _quiet_loggers()
        self._log_levels = [log.level for log in self._logs]
        for log in self._logs:
            log.setLevel(logging.CRITICAL)
        try:
            self.client = self._connect(Client, jobs)
        except BaseException:
            self._restore_logs()
            raise
        if not self.remote:
            self.address = self.client.scheduler.address
        self._queue = as_completed(loop=self.client.loop)
        self._tags: dict = {}

    def _connect(self, Client, jobs):
        if not self.remote:
            # The scheduler and worker always serve HTTP (health, metrics); keep it on
            # the loopback address, on free ports.
            return Client(processes=False, n_workers=1, threads_per_worker=jobs,
                          dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0",
                          set_as_default=False)
        probe_scheduler(self.address, self._timeout)
        try:
            return Client(self.address, timeout=self._timeout, set_as_default=False)
        except Exception as e:                    # noqa: BLE001 - whatever the peer made Dask raise
            why = _one_line(e)[:200] or f"no answer within {self._timeout:g} s"
            raise UserError(f"cannot connect to the Dask scheduler at {self.address} "
                            f"({type(e).__name__}: {why})") from None

    def __enter__(self) -> "JobRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Cancel what is still queued and disconnect (the local cluster stops)."""
        lost = getattr(self.client, "status", "running") != "running"
        try:
            if self._tags:
                self.client.cancel(list(self._tags))
                self._tags.clear()
            self.client.close(timeout=self._timeout)
        except Exception:                         # noqa: BLE001 - a scheduler already gone
            lost = True
        finally:
            # after a lost scheduler, Dask's reconnect timer may still log (with tracebacks)
            # from its own thread: its loggers then stay quiet for the rest of the process
            if not lost:
                self._restore_logs()

    def _restore_logs(self) -> None:
        for log, level in zip(self._logs, self._log_levels):
            log.setLevel(level)

    def on_workers(self, fn: Callable, *args) -> dict:
        """Run ``fn(*args)`` once on every worker, e.g. to check its tools before any work.

        The local cluster's workers are threads of this process, so ``fn`` runs here,
        once. Returns ``{worker address: result}``.

        Raises
        ------
        UserError
            If a worker raises (the message names the worker) or the scheduler has no
            worker within ``connect_timeout``.
        """
        if not self.remote:
            return {self.address: fn(*args)}
        try:
            self.client.wait_for_workers(1, timeout=self._timeout)
            results = self.client.run(fn, *args, on_error="return")
        except TimeoutError as e:
            if type(e).__name__ == "WorkerStartTimeoutError" or "worker" in str(e).lower():
                raise UserError(f"the Dask scheduler at {self.address} has no workers") from None
            raise UserError(f"lost the Dask scheduler at {self.address} ({_one_line(e)[:200]})") from None
        except Exception as e:                    # noqa: BLE001 - the scheduler went away meanwhile
            raise UserError(f"lost the Dask scheduler at {self.address} "
                            f"({type(e).__name__}: {_one_line(e)[:200]})") from None
        for worker, value in sorted(results.items()):
            if isinstance(value, BaseException):
                hint = ("; install asq-hw on every worker"
                        if isinstance(value, ModuleNotFoundError) else "")
                raise UserError(f"on Dask worker {worker}: {describe_failure(value)}{hint}")
        return results

    def submit(self, fn: Callable, *args, tag: Any, name: str = "task", **kwargs) -> None:
        """Queue ``fn(*args, **kwargs)`` on the cluster; its :class:`Outcome` carries ``tag``."""
        future = self.client.submit(fn, *args, key=f"asqhw-{name}-{uuid.uuid4().hex}",
                                    pure=False, **kwargs)
        self._tags[future] = tag
        self._queue.add(future)

    def results(self) -> Iterator[Outcome]:
        """Outcomes in the order the tasks finish; tasks submitted meanwhile are included."""
        for future in self._queue:
            tag = self._tags.pop(future)
            if future.status == "finished":
                try:
                    value = future.result()
                except Exception as e:            # a result that cannot be fetched
                    error = describe_failure(e)
                else:
                    yield Outcome(tag, value)
                    continue
            elif future.status == "error":
                error = describe_failure(future.exception())
            else:
                error = f"task {future.status} (lost connection to the Dask scheduler?)"
            yield Outcome(tag, error=error)
