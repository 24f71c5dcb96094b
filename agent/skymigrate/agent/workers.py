"""Worker processes for direct small-object copies: one Python interpreter per CPU core.

A small object costs CPU, not bandwidth (signing, hashing, parsing: ~0.7 ms for a GET + PUT), and one
interpreter runs Python on one core at a time, so a node with N cores copies small objects up to N
times faster when N processes share them. Each worker builds its own clients from what the agent
passes at start-up (over the pool's pipe: never argv, a file or the environment of a child that
logs) and returns each object's outcome; the agent keeps the journal, the retries and the progress.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

from skymigrate.agent import s5cmd
from skymigrate.agent.direct import copy_direct
from skymigrate.agent.work import Context, ObjectMeta, Outcome
from skymigrate.core.credentials import Credentials
from skymigrate.core.manifest import ObjectEntry
from skymigrate.core.s3 import make_client, make_http_client
from skymigrate.core.spec import Location, TransferSpec

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Below this many objects the workers' start-up (~0.6 s of CPU each) costs more than it saves.
MIN_OBJECTS = 1000


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def process_count(configured: int, direct_objects: int) -> int:
    """How many worker processes to start (0: copy in the agent process). A configured count is used
    as given; the automatic one (one per core) only where there is enough work to repay start-up."""
    if configured:
        return configured if configured > 1 and direct_objects else 0
    n = usable_cpus()
    return n if n > 1 and direct_objects >= MIN_OBJECTS else 0


class DirectWorkers:
    """A pool of ``processes`` interpreters, each copying with ``threads`` threads."""

    def __init__(
        self,
        processes: int,
        threads: int,
        source: Location,
        target: Location,
        source_creds: Credentials,
        target_creds: Credentials,
        transfer: TransferSpec,
    ) -> None:
        self.processes = processes
        self._pool = ProcessPoolExecutor(
            max_workers=processes,
            # spawn, not fork: the agent has threads (metrics server, copy pools) whose locks a fork would copy.
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init,
            initargs=(os.getpid(), threads, source, target, source_creds, target_creds, transfer),
        )
        # Each submit that finds no idle worker starts one: start them all now, from this thread, so they
        # import while the agent prepares.
        self._warm = [self._pool.submit(_ready) for _ in range(processes)]

    def ready(self) -> bool:
        """Every worker has started (until then the agent copies in its own process: no idle start-up)."""
        return all(f.done() for f in self._warm)

    def copy(self, entries: list[ObjectEntry]) -> list[tuple[Outcome, ObjectMeta | None]]:
        """Copy a task's objects in one worker; raises BrokenProcessPool when a worker died."""
        return self._pool.submit(_copy_many, entries).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


# --- inside a worker ---------------------------------------------------------------------------------
_ctx: Context | None = None
_threads: ThreadPoolExecutor | None = None


def _init(
    agent_pid: int,
    threads: int,
    source: Location,
    target: Location,
    source_creds: Credentials,
    target_creds: Credentials,
    transfer: TransferSpec,
) -> None:
    global _ctx, _threads
    _die_with_parent(agent_pid)
    # SIGTERM/SIGINT are the agent's to handle (it journals, then exits and takes the workers with it).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="small")
    _ctx = Context(
        source=s5cmd.Endpoint(source, source_creds),
        target=s5cmd.Endpoint(target, target_creds),
        # boto3 serves only the rare cases (a multipart source's part size, an ETag that is not an MD5):
        # built on first use, so a worker starts in the time it takes to import.
        source_client=cast("S3Client", _LazyClient(source, source_creds)),
        target_client=cast("S3Client", _LazyClient(target, target_creds)),
        source_http=make_http_client(source.endpoint, source_creds, source.region, path_style=source.path_style),
        target_http=make_http_client(target.endpoint, target_creds, target.region, path_style=target.path_style),
        transfer=transfer,
    )


def _ready() -> bool:
    return _ctx is not None


def _copy_many(entries: list[ObjectEntry]) -> list[tuple[Outcome, ObjectMeta | None]]:
    assert _ctx is not None and _threads is not None, "worker not initialised"
    ctx = _ctx
    return list(_threads.map(lambda e: copy_direct(ctx, e), entries))


def _die_with_parent(agent_pid: int) -> None:
    """A worker must not outlive a killed agent: it could still be writing when a new agent resumes.
    (Not PR_SET_PDEATHSIG: it fires when the *thread* that started the process ends, and a worker killed
    while holding the pool's queue lock would hang its siblings.) The agent's pid comes from the agent:
    it may have died while this worker was still importing."""

    def watch() -> None:
        while os.getppid() == agent_pid:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class _LazyClient:
    def __init__(self, side: Location, creds: Credentials) -> None:
        self._side, self._creds = side, creds
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            s = self._side
            self._client = make_client(s.endpoint, self._creds, s.region, path_style=s.path_style)
        return getattr(self._client, name)
