"""Group commit: ops from many documents, submitted concurrently, share one transaction.

Theory of operation: callers (one document actor per document) hand ops to
:meth:`GroupCommitter.submit` or :meth:`~GroupCommitter.submit_nowait`; each op joins a bounded
FIFO of pending ops with a future for its result. One writer task, owned by the committer (started
by :meth:`~GroupCommitter.open`, ended by :meth:`~GroupCommitter.close`), takes everything pending
(up to ``batch_limit``), commits it as one transaction and resolves the futures, then takes what
piled up meanwhile. No timer and no wait: an idle committer commits an op at once, a busy one
commits bigger batches, so the cost of a transaction (an fsync) is shared by more ops the more load
there is. Nothing is shared with another task except through the FIFO and futures, so there is no
lock.

Order: batches commit one after another, each in FIFO order, so the ops of one document commit in
the order they were submitted.

Failure: a transaction that fails as a whole fails every op of its batch. A
:class:`~mailslot.errors.VersionConflict` fails only the ops that do not fit (an op at a taken or
skipped version, and the later ops of its document, which were built on it); the rest of the batch
is committed again without them. The document is then *broken*: the ops that its owner pipelined
after the rejected one may still be queued, or be submitted before the owner hears of the failure,
and none of them may reach the log. So every later op of a broken document fails at once, until
the owner has reloaded the document from the store and calls :meth:`~GroupCommitter.reset`.
Rule for the owner: any error for an op means stop, reload, ``reset``.

Backpressure: at most ``capacity`` ops wait. When full, ``submit_nowait`` raises
:class:`~mailslot.errors.StoreBusy` and ``await submit`` waits for room. An op whose caller is
cancelled still commits (it is in the queue); only the answer is dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec

from mailslot.errors import ConfigError, StoreBusy, StoreError, VersionConflict
from mailslot.meters import Meters
from mailslot.store.base import AsyncResource
from mailslot.store.records import CommitResult, DocKey, OpRecord

__all__ = ["CommitTarget", "CommitterStatistics", "GroupCommitter"]


class CommitTarget(Protocol):
    """What the committer commits to: a :class:`~mailslot.store.Store` or a test double."""

    async def commit(self, ops: Sequence[OpRecord]) -> list[CommitResult]: ...


class CommitterStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a committer's counters.

    Attributes:
        pending: ops waiting for a transaction now.
        capacity: the most ops that may wait.
        commits: transactions committed.
        ops: ops answered by committed transactions (duplicates included).
        failed: ops answered with an error.
        max_batch_size: the most ops one committed transaction carried.
        mean_batch_size: ``ops / commits`` (0 before the first commit).
        last_latency: seconds the last committed transaction took (0 before the first).
        broken: documents refusing ops until :meth:`GroupCommitter.reset`.
    """

    pending: int
    capacity: int
    commits: int
    ops: int
    failed: int
    max_batch_size: int
    mean_batch_size: float
    last_latency: float
    broken: int


_Pending = tuple[OpRecord, "asyncio.Future[CommitResult]"]


def _answer(future: asyncio.Future[CommitResult], outcome: CommitResult | BaseException) -> None:
    if future.done():  # its caller was cancelled; the op was committed all the same
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class GroupCommitter(AsyncResource):
    """Commits ops from many concurrent callers in shared transactions; see the module docstring.

    Args:
        store: where ops are committed.
        capacity: the most ops that may wait for a transaction.
        batch_limit: the most ops in one transaction.
        clock: seconds, for the latency statistic only.
        meters: where batch sizes, latencies and failures are reported (optional).
    """

    def __init__(
        self,
        store: CommitTarget,
        *,
        capacity: int = 10_000,
        batch_limit: int = 1_000,
        clock: Callable[[], float] = time.perf_counter,
        meters: Meters | None = None,
    ) -> None:
        if capacity < 1 or batch_limit < 1:
            raise ConfigError(
                f"capacity and batch_limit must be at least 1, got {capacity} and {batch_limit}"
            )
        self._store = store
        self._capacity = capacity
        self._batch_limit = batch_limit
        self._clock = clock
        self._meters = meters
        self._queue: deque[_Pending] = deque()
        self._room: deque[asyncio.Future[None]] = deque()  # callers of submit() waiting for room
        self._wakeup: asyncio.Future[None] | None = None  # the idle writer waits on this
        self._inflight: list[_Pending] = []
        self._broken: dict[DocKey, int] = {}  # document -> version of its rejected op
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._commits = 0
        self._ops = 0
        self._failed = 0
        self._max_batch = 0
        self._last_latency = 0.0

    async def open(self) -> None:
        """Start the writer task.

        Raises:
            StoreError: the committer was opened before.
        """
        if self._task is not None or self._closing:
            raise StoreError("the group committer was opened before")
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="mailslot-group-committer"
        )

    async def close(self) -> None:
        """Refuse new ops, commit every op already submitted, and end the writer task."""
        self._closing = True
        self._wake_writer()
        for waiter in self._room:
            if not waiter.done():
                waiter.set_result(None)  # they retry and meet the closed committer
        if self._task is not None:
            await self._task

    def submit_nowait(self, op: OpRecord) -> asyncio.Future[CommitResult]:
        """Queue ``op`` for the next transaction and return the future of its result.

        The future raises :class:`~mailslot.errors.VersionConflict` or
        :class:`~mailslot.errors.StoreError` when the op was not stored.

        Raises:
            StoreBusy: ``capacity`` ops are waiting already.
            StoreError: the committer is not open, or is closing.
        """
        if self._task is None or self._closing:
            raise StoreError("the group committer is not open")
        if len(self._queue) >= self._capacity:
            raise StoreBusy(f"the group committer has {self._capacity} ops waiting already")
        future: asyncio.Future[CommitResult] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future))
        self._wake_writer()
        return future

    async def submit(self, op: OpRecord) -> CommitResult:
        """Commit ``op`` with whatever else is pending; wait for room when the queue is full.

        Returns:
            The op's result once its transaction is durable.

        Raises:
            VersionConflict: the op does not follow its document's log, or the document is broken.
            StoreError: the transaction failed, or the committer is not open.
        """
        while True:
            try:
                future = self.submit_nowait(op)
            except StoreBusy:
                await self._wait_for_room()
                continue
            return await future

    def reset(self, collection: str, doc: str) -> None:
        """Accept ops for a broken document again; call after reloading it from the store."""
        self._broken.pop((collection, doc), None)

    def statistics(self) -> CommitterStatistics:
        """The counters now; cheap."""
        return CommitterStatistics(
            pending=len(self._queue) + len(self._inflight),
            capacity=self._capacity,
            commits=self._commits,
            ops=self._ops,
            failed=self._failed,
            max_batch_size=self._max_batch,
            mean_batch_size=self._ops / self._commits if self._commits else 0.0,
            last_latency=self._last_latency,
            broken=len(self._broken),
        )

    async def _wait_for_room(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._make_room()  # pass on the room this caller was given
            raise

    def _make_room(self) -> None:
        free = self._capacity - len(self._queue)
        while free > 0 and self._room:
            waiter = self._room.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def _wake_writer(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _run(self) -> None:
        try:
            while self._queue or not self._closing:
                if not self._queue:
                    self._wakeup = asyncio.get_running_loop().create_future()
                    await self._wakeup
                    continue
                take = min(len(self._queue), self._batch_limit)
                self._inflight = [self._queue.popleft() for _ in range(take)]
                self._make_room()
                await self._commit(self._inflight)
                self._inflight = []
        finally:
            stopped = StoreError("the group committer stopped before committing this op")
            for _, future in [*self._inflight, *self._queue]:
                _answer(future, stopped)
            self._inflight = []
            self._queue.clear()

    async def _commit(self, batch: list[_Pending]) -> None:
        batch = [item for item in batch if not self._refused(*item)]
        while batch:
            ops = [op for op, _ in batch]
            start = self._clock()
            try:
                results = await self._store.commit(ops)
            except VersionConflict as conflict:
                if conflict.misfits:
                    self._reject(batch, conflict)
                    misfits = {position for position, _ in conflict.misfits}
                    batch = [item for i, item in enumerate(batch) if i not in misfits]
                    continue
                self._fail(batch, conflict)
                return
            except Exception as exc:  # the callers' futures carry it; the writer goes on
                self._fail(batch, exc)
                return
            self._last_latency = self._clock() - start
            if self._meters is not None:
                self._meters.store_commit_seconds.observe(self._last_latency)
                self._meters.store_commit_batch_size.observe(len(batch))
            self._commits += 1
            self._ops += len(batch)
            self._max_batch = max(self._max_batch, len(batch))
            for (_, future), result in zip(batch, results, strict=True):
                _answer(future, result)
            return

    def _fail(self, batch: list[_Pending], exc: Exception) -> None:
        self._failed += len(batch)
        if self._meters is not None:
            self._meters.store_errors.inc()
        for _, future in batch:
            _answer(future, exc)

    def _reject(self, batch: list[_Pending], conflict: VersionConflict) -> None:
        for position, expected in conflict.misfits:
            op, future = batch[position]
            self._broken.setdefault(op.key, op.version)
            self._conflict(
                future,
                op,
                expected,
                f"op at version {op.version} of document {op.collection}/{op.doc} was not "
                f"stored: the log expects version {expected} ({conflict})",
            )

    def _refused(self, op: OpRecord, future: asyncio.Future[CommitResult]) -> bool:
        rejected = self._broken.get(op.key)
        if rejected is None:
            return False
        self._conflict(
            future,
            op,
            rejected,
            f"document {op.collection}/{op.doc} refuses ops since its op at version "
            f"{rejected} was rejected; reload it and call reset()",
        )
        return True

    def _conflict(
        self, future: asyncio.Future[CommitResult], op: OpRecord, expected: int, message: str
    ) -> None:
        self._failed += 1
        conflict = VersionConflict(
            message, collection=op.collection, doc_id=op.doc, version=op.version, expected=expected
        )
        _answer(future, conflict)
