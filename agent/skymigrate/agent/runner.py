"""One node's run: read its shard, skip what is done, copy the rest with bounded concurrency and
retries, and report progress until every object is verified in the target or recorded as failed."""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Literal

from skymigrate.agent import s5cmd
from skymigrate.agent.batch import copy_batch
from skymigrate.agent.direct import copy_direct
from skymigrate.agent.inprocess import copy_inprocess, staged_bytes
from skymigrate.agent.journal import Journal
from skymigrate.agent.staging import StagingArea, StagingError, disk_usage
from skymigrate.agent.stream import copy_stream, s5cmd_can_carry
from skymigrate.agent.tracker import Tracker, report
from skymigrate.agent.work import Context, ObjectMeta, Outcome, Stage, head
from skymigrate.agent.workers import DirectWorkers, process_count
from skymigrate.core.credentials import Credentials
from skymigrate.core.manifest import ObjectEntry, decode_entries
from skymigrate.core.metrics import AgentMetrics
from skymigrate.core.plan import RunConfig, failed_path, progress_path, shard_path
from skymigrate.core.preflight import check_bucket
from skymigrate.core.progress import NodePhase
from skymigrate.core.s3 import make_client, make_http_client
from skymigrate.core.statestore import StateStore

log = logging.getLogger("skymigrate.agent")


class AgentError(RuntimeError):
    """Bad input or configuration: nothing was copied."""


@dataclass(order=True)
class Task:
    ready_at: float
    seq: int
    kind: str = field(compare=False)  # "direct" | "batch" | "stream" | "inprocess"
    entries: list[ObjectEntry] = field(compare=False)


@dataclass
class FailedObject:
    key: str
    size: int
    stage: Stage | None
    reason: str
    attempts: int


def backoff(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter (attempt 1 -> up to ``initial`` seconds)."""
    return rng.uniform(0, min(cap, initial * 2 ** (attempt - 1)))


SmallObjects = Literal["direct", "s5cmd"]
MIN_BATCH_OBJECTS = 8  # below this a batch's three s5cmd processes cost more than they save
MIN_BATCH_BYTES = 16 * 2**20
DIRECT_MEMORY = 512 * 2**20
DIRECT_TASK_OBJECTS = 32


def plan_tasks(
    entries: list[ObjectEntry],
    threshold: int,
    batch_objects: int,
    batch_bytes: int,
    slots: int = 1,
    small: SmallObjects = "direct",
) -> Iterator[Task]:
    """Large objects first (so the tail is made of small, quick work), then batches of small ones.

    Batches are cut small enough that every one of ``slots`` workers gets at least two: a batch runs its
    download, upload and check one after the other, so only several batches in flight keep both the
    network directions and the CPU busy at the same time.
    """
    smalls = [e for e in entries if e.size <= threshold]
    per_slot = 2 * max(slots, 1)
    batch_objects = min(batch_objects, max(MIN_BATCH_OBJECTS, -(-len(smalls) // per_slot)))
    batch_bytes = min(batch_bytes, max(MIN_BATCH_BYTES, -(-sum(e.size for e in smalls) // per_slot)))
    kind = "direct" if small == "direct" else "batch"
    if kind == "direct":
        # Direct copies run in parallel on the small-object pool whatever the task size; small tasks only
        # make progress (and the ETA built on it) move object by object instead of in jumps.
        batch_objects = min(batch_objects, DIRECT_TASK_OBJECTS)
    seq = itertools.count()
    large = sorted((e for e in entries if e.size > threshold), key=lambda e: -e.size)
    for e in large:
        yield Task(0.0, next(seq), "stream" if s5cmd.safe_key(e.key) else "inprocess", [e])
    batch: list[ObjectEntry] = []
    nbytes = 0
    for e in entries:
        if e.size > threshold:
            continue
        if kind == "batch" and not s5cmd.safe_key(e.key):
            yield Task(0.0, next(seq), "inprocess", [e])
            continue
        if batch and (len(batch) >= batch_objects or nbytes + e.size > batch_bytes):
            yield Task(0.0, next(seq), kind, batch)
            batch, nbytes = [], 0
        batch.append(e)
        nbytes += e.size
    if batch:
        yield Task(0.0, next(seq), kind, batch)


class Agent:
    def __init__(
        self,
        config: RunConfig,
        store: StateStore,
        rank: int,
        nodes: int,
        source_creds: Credentials,
        target_creds: Credentials,
        metrics: AgentMetrics,
        small_objects: SmallObjects = "direct",
    ) -> None:
        self.cfg, self.spec, self.store = config, config.spec, store
        self.small_objects: SmallObjects = small_objects
        self.rank, self.nodes = rank, nodes
        src, tgt = self.spec.source, self.spec.target
        pool = max(32, self.spec.concurrency * 8)
        self.src_client = make_client(src.endpoint, source_creds, src.region, path_style=src.path_style, max_pool=pool)
        self.tgt_client = make_client(tgt.endpoint, target_creds, tgt.region, path_style=tgt.path_style, max_pool=pool)
        # Small objects speed up when the streams end even when worker processes give them slots of their
        # own: the streams' share of CPU and network goes to them (about 2x on the 2-core bench machine,
        # where assuming no gain made the mid-run ETA 2-3x too high; bench/FINDINGS.md).
        self.tracker = Tracker(rank, metrics, slots=self.spec.concurrency)
        self.metrics = metrics
        self.journal = Journal(store, rank)
        try:
            self.staging = StagingArea(self.spec.ram_disk.path, self.spec.ram_disk.size_bytes)
        except StagingError as e:
            raise AgentError(str(e)) from e
        self.failed: dict[str, FailedObject] = {}
        self.attempts: dict[str, int] = {}
        self._stop = threading.Event()
        self._rng = random.Random()
        self._head_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="head")
        # Direct copies hold each body in memory: bound the total near 512 MiB whatever the threshold.
        self._small_workers = max(4, min(32, DIRECT_MEMORY // max(self.spec.transfer.small_object_threshold, 1)))
        self._small_pool = ThreadPoolExecutor(max_workers=self._small_workers, thread_name_prefix="small")
        self._workers: DirectWorkers | None = None
        self._by_workers = 0  # objects the worker processes copied (the rest: this process)
        self._source_creds, self._target_creds = source_creds, target_creds
        self.ctx = Context(
            source=s5cmd.Endpoint(src, source_creds),
            target=s5cmd.Endpoint(tgt, target_creds),
            source_client=self.src_client,
            target_client=self.tgt_client,
            source_http=make_http_client(src.endpoint, source_creds, src.region, path_style=src.path_style),
            target_http=make_http_client(tgt.endpoint, target_creds, tgt.region, path_style=tgt.path_style),
            transfer=self.spec.transfer,
            on_bytes=self.tracker.moving,
            debug=self._debug,
        )

    # --- logging -----------------------------------------------------------------------------
    def _debug(self, msg: str) -> None:
        if self.spec.debug:
            log.info(msg)

    def _resources_line(self) -> str:
        ram, disk = self.staging.usage(), disk_usage()
        return (
            f"💾 Resource Usage:\n   RAM disk: {ram.ratio * 100:.0f}% used ({ram.available / 1e9:.1f}G available)\n"
            f"   Root disk: {disk.ratio * 100:.0f}% used ({disk.available / 1e9:.1f}G available)"
        )

    # --- input -------------------------------------------------------------------------------
    def load_shard(self) -> list[ObjectEntry]:
        data = self.store.get(shard_path(self.rank))
        if data is None:
            raise AgentError(
                f"no shard manifest {shard_path(self.rank)} in {self.store.url}: was the migration planned?"
            )
        return decode_entries(data)

    def preflight(self) -> None:
        s, t = self.spec.source, self.spec.target
        check_bucket(self.src_client, "source", s.endpoint, s.bucket)
        check_bucket(self.tgt_client, "target", t.endpoint, t.bucket)

    def identical_in_target(self, entries: list[ObjectEntry]) -> set[str]:
        """Keys whose target copy already has the same size and ETag (listing, 1 request per 1000 keys)."""
        want = {e.key: e for e in entries if e.etag}
        if not want:
            return set()
        same: set[str] = set()
        t = self.spec.target
        for o in self.ctx.target_http.list_objects(t.bucket, t.prefix):
            e = want.get(o.key[len(t.prefix) :])
            if e and o.size == e.size and o.etag == e.etag.strip('"'):
                same.add(e.key)
        return same

    def abort_stale_uploads(self, entries: list[ObjectEntry]) -> int:
        """Abort multipart uploads a killed run of this shard left open (they cost storage, and a stale
        part must never be completed). Only this shard's keys: other nodes may be uploading theirs."""
        t = self.spec.target
        mine = {t.prefix + e.key for e in entries}
        n = 0
        try:
            for page in self.tgt_client.get_paginator("list_multipart_uploads").paginate(
                Bucket=t.bucket, Prefix=t.prefix
            ):
                for u in page.get("Uploads", []):
                    if u.get("Key") in mine:
                        self.tgt_client.abort_multipart_upload(Bucket=t.bucket, Key=u["Key"], UploadId=u["UploadId"])
                        n += 1
        except Exception as e:  # not fatal: the copy itself does not depend on it
            log.warning("could not clean up unfinished multipart uploads in the target: %s", str(e).splitlines()[0])
        if n:
            log.info("aborted %d unfinished multipart upload%s left by an earlier run", n, "s" * (n > 1))
        return n

    # --- the run -----------------------------------------------------------------------------
    def run(self) -> int:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            return self._run()
        finally:
            self._head_pool.shutdown(wait=False, cancel_futures=True)
            self._small_pool.shutdown(wait=False, cancel_futures=True)
            if self._workers:
                self._workers.close()
            self.staging.close()

    def _on_sigterm(self, signum: int, frame: object) -> None:
        # Not in the handler itself: it may have interrupted a thread holding the journal's lock.
        threading.Thread(target=self._stop_now, name="sigterm", daemon=True).start()

    def _stop_now(self) -> None:
        """Keep what was verified (the journal) and stop at once. Copies in flight are abandoned: their
        s5cmd processes die with this one, an unfinished PUT is discarded by the server, and a multipart
        upload left open is aborted by the next run, which copies those objects again."""
        log.warning("⏹️ SIGTERM: recording finished objects, then stopping")
        try:
            self.journal.flush()
            self.store.put(failed_path(self.rank), self._failed_jsonl())
        except Exception as e:
            log.error("could not record progress before stopping: %s", e)
        finally:
            logging.shutdown()
            os._exit(143)

    def _failed_jsonl(self) -> bytes:
        return "".join(json.dumps(f.__dict__, ensure_ascii=False) + "\n" for f in list(self.failed.values())).encode()

    def _run(self) -> int:
        # A copy whose progress cannot be journaled could not resume: fail before touching anything.
        self.store.put(progress_path(self.rank), self.tracker.heartbeat("Launching").model_dump_json().encode())
        self.preflight()
        entries = self.load_shard()
        if self.small_objects == "direct":
            # Started now, the worker processes import while the target is listed below.
            threshold = self.spec.transfer.small_object_threshold
            self._start_workers(sum(1 for e in entries if e.size <= threshold))
        try:
            self.staging.open()
        except (OSError, StagingError) as err:
            raise AgentError(str(err)) from err
        self.abort_stale_uploads(entries)
        self.tracker.set_totals(entries, self.spec.transfer.small_object_threshold)
        done = self.journal.load()
        todo = [e for e in entries if e.key not in done]
        journaled = len(entries) - len(todo)
        same = self.identical_in_target(todo)
        for e in todo:
            if e.key in same:
                self.journal.record(e.key)
        skipped = [e for e in entries if e.key in done or e.key in same]
        self.tracker.skipped(skipped)
        todo = [e for e in todo if e.key not in same]
        log.info(
            "Node %d/%d: %d objects (%s) in shard; %d already done (journal), %d already identical in target; "
            "%d to copy. Debug mode: %s",
            self.rank,
            self.nodes,
            len(entries),
            _gb(sum(e.size for e in entries)),
            journaled,
            len(same),
            len(todo),
            str(self.spec.debug).lower(),
        )
        self.metrics.up.set(1)
        reporter = threading.Thread(target=self._report_loop, name="reporter", daemon=True)
        reporter.start()
        try:
            self._copy_all(todo)
        finally:
            self._stop.set()
            reporter.join()
        phase: NodePhase = "Failed" if self.failed else "Succeeded"
        if self._workers:
            log.info("Small objects: %d copy attempts in worker processes", self._by_workers)
        self._flush(phase)
        log.info(report(self.tracker.heartbeat(phase), self.tracker.elapsed()))
        self.metrics.up.set(0)
        if self.failed:
            log.error("❌ %d objects failed; see %s/%s", len(self.failed), self.store.url, failed_path(self.rank))
            return 3
        log.info("✅ Node %d done: every object verified in the target", self.rank)
        return 0

    def _copy_all(self, todo: list[ObjectEntry]) -> None:
        tr = self.spec.transfer
        batch_bytes = min(tr.batch_max_bytes, max(self.staging.capacity // (2 * self.spec.concurrency), 1))
        queue = list(
            plan_tasks(
                todo,
                tr.small_object_threshold,
                tr.batch_max_objects,
                batch_bytes,
                self.spec.concurrency,
                self.small_objects,
            )
        )
        heapq.heapify(queue)
        seq = itertools.count(len(queue))
        running: dict[Future[list[Outcome]], Task] = {}
        with ThreadPoolExecutor(max_workers=self.spec.concurrency, thread_name_prefix="copy") as pool:
            while queue or running:
                now = time.monotonic()
                while queue and queue[0].ready_at <= now and self._has_slot(queue[0], running.values()):
                    task = heapq.heappop(queue)
                    running[pool.submit(self._run_task, task)] = task
                timeout = max(0.05, min(1.0, queue[0].ready_at - now)) if queue else 1.0
                finished, _ = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
                for fut in finished:
                    task = running.pop(fut)
                    try:
                        outcomes = fut.result()
                    except Exception as e:  # a bug or an environment failure: count it against every object
                        log.exception("task failed")
                        outcomes = [
                            Outcome(en, False, "batch", "download", f"{type(e).__name__}: {e}") for en in task.entries
                        ]
                    retry: list[ObjectEntry] = []
                    for o in outcomes:
                        if self._settle(o):
                            retry.append(o.entry)
                    if retry:
                        attempt = max(self.attempts[e.key] for e in retry)
                        r = self.spec.retry
                        delay = backoff(attempt, r.initial_backoff_seconds, r.max_backoff_seconds, self._rng)
                        heapq.heappush(queue, Task(time.monotonic() + delay, next(seq), task.kind, retry))

    def _has_slot(self, task: Task, running: Iterable[Task]) -> bool:
        """``concurrency`` tasks at once; worker processes add two direct tasks each, so every one of them
        has its next task queued while it copies one."""
        kinds = [t.kind for t in running]
        extra = 2 * self._workers.processes if self._workers else 0
        if len(kinds) >= self.spec.concurrency + extra:
            return False
        direct = kinds.count("direct")
        if task.kind == "direct":
            return direct < max(self.spec.concurrency, extra)
        return len(kinds) - direct < self.spec.concurrency

    def _start_workers(self, direct_objects: int) -> None:
        n = process_count(self.spec.transfer.worker_processes, direct_objects)
        if not n:
            return
        sp = self.spec
        # The same memory bound as the in-process pool: each in-flight body is held whole.
        threads = max(4, self._small_workers // n)
        self._workers = DirectWorkers(
            n, threads, sp.source, sp.target, self._source_creds, self._target_creds, sp.transfer
        )
        log.info("Small objects: %d worker processes x %d threads", n, threads)

    def _run_task(self, task: Task) -> list[Outcome]:
        if task.kind == "direct":
            return self._run_direct(task.entries)
        metas = list(self._head_pool.map(self._head_source, task.entries))
        out: list[Outcome] = []
        items: list[tuple[ObjectEntry, ObjectMeta]] = []
        for e, m in zip(task.entries, metas, strict=True):
            if isinstance(m, Outcome):
                out.append(m)
            else:
                items.append((e, m))
                if self.spec.debug:
                    self._debug_object(e, m)
        if not items:
            return out
        name = f"t{task.seq}"
        if task.kind != "inprocess" and not all(s5cmd_can_carry(m) for _, m in items):
            # Headers s5cmd cannot set (Content-Language): those objects go in-process instead.
            odd = [(e, m) for e, m in items if not s5cmd_can_carry(m)]
            items = [(e, m) for e, m in items if s5cmd_can_carry(m)]
            out += self._inprocess(odd, name + "i")
        if not items:
            return out
        if task.kind == "batch":
            with self.staging.reserve(sum(m.size for _, m in items), name) as d:
                out += copy_batch(self.ctx, items, d)
        elif task.kind == "stream":
            out += [copy_stream(self.ctx, e, m) for e, m in items]
        else:
            out += self._inprocess(items, name)
        return out

    def _inprocess(self, items: list[tuple[ObjectEntry, ObjectMeta]], name: str) -> list[Outcome]:
        with self.staging.reserve(max(staged_bytes(m) for _, m in items), name) as d:  # one object at a time
            return [copy_inprocess(self.ctx, e, m, d / str(i)) for i, (e, m) in enumerate(items)]

    def _run_direct(self, entries: list[ObjectEntry]) -> list[Outcome]:
        workers = self._workers
        if workers is None or not workers.ready():
            results = list(self._small_pool.map(lambda e: copy_direct(self.ctx, e), entries))
        else:
            try:
                results = workers.copy(entries)
                self._by_workers += len(entries)
            except BrokenProcessPool as e:  # a worker died (OOM killer?): carry on in this process
                log.warning("small-object worker processes stopped (%s); copying in the agent process", e)
                self._workers = None
                workers.close()
                results = list(self._small_pool.map(lambda e: copy_direct(self.ctx, e), entries))
        out: list[Outcome] = []
        for outcome, meta in results:
            if self.spec.debug and meta is not None:
                self._debug_object(outcome.entry, meta)
            out.append(outcome)
        return out

    def _head_source(self, e: ObjectEntry) -> ObjectMeta | Outcome:
        try:
            m = head(self.src_client, self.spec.source.bucket, self.spec.source.prefix + e.key)
        except Exception as ex:
            return Outcome(e, False, "batch", "download", f"HEAD source: {str(ex).splitlines()[0][:200]}")
        if m is None:
            return Outcome(e, False, "batch", "download", "source object no longer exists", permanent=True)
        return m

    def _debug_object(self, e: ObjectEntry, m: ObjectMeta) -> None:
        log.info(
            "🔍 Processing: %s (%d bytes)\n   Source: %s\n   Target: %s\n%s\n   ✅ Object exists in source",
            e.key,
            m.size,
            self.ctx.source.url(e.key),
            self.ctx.target.url(e.key),
            self._resources_line(),
        )

    def _settle(self, o: Outcome) -> bool:
        """Record an outcome; True when the object should be tried again."""
        key = o.entry.key
        if o.ok:
            self.tracker.copied(key, o.bytes)
            self.journal.record(key)
            self.failed.pop(key, None)
            self.metrics.observe(o.method, o.seconds)
            if self.spec.debug:
                log.info(_speed_lines(o))
            return False
        n = self.attempts[key] = self.attempts.get(key, 0) + 1
        reason = o.error or "unknown error"
        stage_word = {"download": "Download", "upload": "Upload", "verify": "Verification"}.get(o.stage or "", "Copy")
        if o.permanent or n >= self.spec.retry.attempts:
            self.tracker.failed(key, o.entry.size, reason)
            self.failed[key] = FailedObject(key, o.entry.size, o.stage, reason, n)
            log.error("❌ %s failed: %s (after %d attempt%s): %s", stage_word, key, n, "s" * (n > 1), reason)
            if self.spec.debug:
                log.info(self._failure_diagnostics(o, n))
            return False
        self.tracker.retried(key, o.stage or "download", reason)
        log.warning(
            "⚠️ %s failed: %s (attempt %d/%d), retrying: %s", stage_word, key, n, self.spec.retry.attempts, reason
        )
        if self.spec.debug:
            log.info(self._failure_diagnostics(o, n))
        return True

    def _failure_diagnostics(self, o: Outcome, attempt: int) -> str:
        """The seed's error diagnostics: where it failed, what the command said, and the disks."""
        side = "source" if o.stage == "download" else "target"
        return (
            f"   Debug: check {side} bucket permissions, object existence, and connectivity\n"
            f"   Stage: {o.stage or 'unknown'} ({o.method}), attempt {attempt}/{self.spec.retry.attempts}"
            f"{', permanent' if o.permanent else ''}\n"
            f"   Output: {o.error or 'none'}\n"
            f"   Object: {self.ctx.source.url(o.entry.key)} ({o.entry.size} bytes) -> {self.ctx.target.url(o.entry.key)}\n"
            f"{self._resources_line()}"
        )

    # --- reporting ---------------------------------------------------------------------------
    def _report_loop(self) -> None:
        interval = self.spec.progress.node_interval_seconds
        next_beat = time.monotonic() + min(interval, 2.0)  # an early first beat so ETA shows up soon
        while not self._stop.wait(min(1.0, interval)):
            self.tracker.sample()
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + interval
                try:
                    self._flush("Running")
                    log.info(report(self.tracker.heartbeat("Running"), self.tracker.elapsed()))
                except Exception as e:
                    log.error("progress report failed: %s", e)

    def _flush(self, phase: NodePhase) -> None:
        ram, disk = self.staging.check(), disk_usage()
        self.tracker.usage = (ram.used, ram.capacity, disk.used, disk.capacity)
        self.tracker.sample()
        self.journal.flush()
        self.store.put(failed_path(self.rank), self._failed_jsonl())
        self.store.put(progress_path(self.rank), self.tracker.heartbeat(phase).model_dump_json().encode())


def _speed_lines(o: Outcome) -> str:
    """The seed's per-object line, with download / upload / average speeds where they were measured."""
    line = f"✅ {o.entry.key} ({o.bytes} bytes) - {o.method.capitalize()}: {_mbps(o.bytes, o.seconds)}"
    if o.method == "batch":  # the batch moved its objects together: its own lines give the speeds
        return line + " (batch average)"
    return (
        f"{line}\n   Download: {_mbps(o.bytes, o.download_s)}, Upload: {_mbps(o.bytes, o.upload_s)}, "
        f"Average: {_mbps(o.bytes, o.seconds)}"
    )


def _mbps(n: int, seconds: float) -> str:
    return f"{n / seconds / 1e6:.2f} MB/s" if seconds > 0 else "- MB/s"


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


StopCheck = Callable[[], bool]
