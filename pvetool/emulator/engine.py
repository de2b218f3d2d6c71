"""Discrete-time engine of the emulator: timers, bandwidth-sharing flows and generator jobs.

A migration is written as a generator that yields what it waits for (`Wait`, `Send`, `Ram`); the
engine resumes it when that is done, or throws `JobFailure` into it when a fault strikes. Time runs
in whole ticks of `step_s` emulated seconds, so results depend only on the emulated times at which
things start, not on how often the HTTP side asks (determinism for a cluster file and seed).

Imports: stdlib and `pvetool.timing` only.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from pvetool.timing import Flow, Precopy, PrecopyEvent, max_min_fair


class JobFailure(Exception):
    """Thrown into a job generator: the migration fails with this message."""


class JobInterrupted(JobFailure):
    """Thrown into a job generator when its task is stopped (DELETE on the task)."""


@dataclass
class Wait:
    seconds: float


@dataclass
class Send:
    """Move `nbytes` over the network from `source` to `target` (a disk copy)."""

    nbytes: float
    source: str
    target: str
    cap_Bps: float
    on_second: Callable[[float, float], None] | None = None  # (sent_bytes, rate_Bps) each second


@dataclass
class Ram:
    """RAM pre-copy until stop-and-copy (or abort)."""

    precopy: Precopy
    source: str
    target: str
    cap_Bps: float
    on_second: Callable[[Precopy, float], None] | None = None
    on_event: Callable[[PrecopyEvent], None] | None = None


Request = Wait | Send | Ram
JobGen = Generator[Request, Any, None]


@dataclass
class FlowState:
    job: Job
    request: Send | Ram
    sent_bytes: float = 0.0
    rate_Bps: float = 0.0
    second_acc_s: float = 0.0
    second_bytes: float = 0.0
    last_rate_Bps: float = 0.0

    @property
    def resources(self) -> tuple[str, str]:
        return (f"up:{self.request.source}", f"down:{self.request.target}")


@dataclass
class Job:
    """One running generator (a migration task's worker)."""

    name: str
    gen: JobGen
    done: bool = False
    hung: bool = False
    fail_at_fraction: float | None = None
    fail_message: str = ""
    progress_total_bytes: float = 0.0
    progress_sent_bytes: float = 0.0
    flow: FlowState | None = None
    on_finish: Callable[[Job], None] | None = None
    pending_throw: JobFailure | None = None
    waiting_timer: int | None = None
    hung_wait_s: float = 0.0  # the Wait a hung job was asked for; run once it is released

    @property
    def progress_fraction(self) -> float:
        if self.progress_total_bytes <= 0:
            return 0.0
        return min(1.0, self.progress_sent_bytes / self.progress_total_bytes)


class Engine:
    """Runs timers and jobs in emulated time; `advance_to()` is called before every answer."""

    def __init__(self, start_epoch_s: float, step_s: float) -> None:
        self.step_s = step_s
        self.epoch0_s = start_epoch_s
        self.tick = 0
        self._timers: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cancelled: set[int] = set()
        self.flows: list[FlowState] = []
        self._rates_dirty = True
        self.link_Bps: dict[str, float] = {}
        self.jobs: list[Job] = []

    # -- time ------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.epoch0_s + self.tick * self.step_s

    def _tick_at_or_after(self, t: float) -> int:
        return max(self.tick, math.ceil((t - self.epoch0_s) / self.step_s - 1e-9))

    def call_at(self, t: float, fn: Callable[[], None]) -> int:
        seq = next(self._seq)
        heapq.heappush(self._timers, (self._tick_at_or_after(t), seq, fn))
        return seq

    def call_later(self, seconds: float, fn: Callable[[], None]) -> int:
        return self.call_at(self.now + seconds, fn)

    def cancel(self, timer_id: int) -> None:
        self._cancelled.add(timer_id)

    def advance_to(self, t: float) -> None:
        target_tick = math.floor((t - self.epoch0_s) / self.step_s + 1e-9)
        self._run_due_timers()
        while self.tick < target_tick:
            if not self.flows:
                nxt = self._next_timer_tick()
                if nxt is None or nxt > target_tick:
                    self.tick = target_tick
                    break
                self.tick = max(self.tick, nxt)
            else:
                self._step_flows()
                self.tick += 1
                self._finish_flows()
            self._run_due_timers()

    def _next_timer_tick(self) -> int | None:
        while self._timers and self._timers[0][1] in self._cancelled:
            _, seq, _ = heapq.heappop(self._timers)
            self._cancelled.discard(seq)
        return self._timers[0][0] if self._timers else None

    def _run_due_timers(self) -> None:
        while True:
            nxt = self._next_timer_tick()
            if nxt is None or nxt > self.tick:
                return
            _, _, fn = heapq.heappop(self._timers)
            fn()

    # -- flows -----------------------------------------------------------------------------
    def _recompute_rates(self) -> None:
        specs = []
        for fl in self.flows:
            cap = 0.0 if fl.job.hung else fl.request.cap_Bps
            specs.append(Flow(resources=fl.resources, cap_Bps=cap))
        capacity: dict[str, float] = {}
        for fl in self.flows:
            for res in fl.resources:
                node = res.split(":", 1)[1]
                capacity[res] = self.link_Bps.get(node, 0.0)
        rates = max_min_fair(specs, capacity) if specs else []
        for fl, rate in zip(self.flows, rates, strict=True):
            fl.rate_Bps = rate
        self._rates_dirty = False

    def _step_flows(self) -> None:
        if self._rates_dirty:
            self._recompute_rates()
        dt = self.step_s
        for fl in list(self.flows):
            job = fl.job
            if job.done or job.hung or job.pending_throw is not None:
                continue
            req = fl.request
            if isinstance(req, Send):
                moved = min(req.nbytes - fl.sent_bytes, fl.rate_Bps * dt)
                fl.sent_bytes += moved
            else:
                before = req.precopy.sent_bytes
                events = req.precopy.step(fl.rate_Bps, dt)
                moved = req.precopy.sent_bytes - before
                for ev in events:
                    if req.on_event is not None:
                        req.on_event(ev)
            job.progress_sent_bytes += moved
            fl.second_bytes += moved
            fl.second_acc_s += dt
            if fl.second_acc_s >= 1.0 - 1e-9:
                fl.last_rate_Bps = fl.second_bytes / fl.second_acc_s
                if isinstance(req, Send):
                    if req.on_second is not None:
                        req.on_second(fl.sent_bytes, fl.last_rate_Bps)
                elif req.on_second is not None:
                    req.on_second(req.precopy, fl.last_rate_Bps)
                fl.second_acc_s = 0.0
                fl.second_bytes = 0.0
            if job.fail_at_fraction is not None and job.progress_fraction >= job.fail_at_fraction:
                job.fail_at_fraction = None
                job.pending_throw = JobFailure(job.fail_message)

    def _finish_flows(self) -> None:
        for fl in list(self.flows):
            job = fl.job
            req = fl.request
            if job.pending_throw is not None:
                exc, job.pending_throw = job.pending_throw, None
                self._remove_flow(fl)
                self._resume(job, exc=exc)
                continue
            finished = (
                fl.sent_bytes >= req.nbytes - 1e-6
                if isinstance(req, Send)
                else (req.precopy.finished or req.precopy.aborted)
            )
            if finished:
                self._remove_flow(fl)
                self._resume(job, value=fl)

    def _remove_flow(self, fl: FlowState) -> None:
        if fl in self.flows:
            self.flows.remove(fl)
            self._rates_dirty = True
        fl.job.flow = None

    # -- jobs ------------------------------------------------------------------------------
    def start_job(self, job: Job) -> None:
        self.jobs.append(job)
        self._resume(job)

    def throw(self, job: Job, exc: JobFailure) -> None:
        """Deliver a failure to a job now (node down, task stopped...)."""
        if job.done:
            return
        if job.flow is not None:
            self._remove_flow(job.flow)
        if job.waiting_timer is not None:
            self.cancel(job.waiting_timer)
            job.waiting_timer = None
        self._resume(job, exc=exc)

    def _resume(self, job: Job, value: Any = None, exc: BaseException | None = None) -> None:
        job.waiting_timer = None
        try:
            req = job.gen.throw(exc) if exc is not None else job.gen.send(value)
        except StopIteration:
            self._finish_job(job)
            return
        self._wait_on(job, req)

    def _wait_on(self, job: Job, req: Request) -> None:
        if isinstance(req, Wait):
            if job.hung:
                # A hung task makes no progress; it is resumed by `unhang` or killed.
                job.hung_wait_s = req.seconds
                return
            job.waiting_timer = self.call_later(req.seconds, lambda: self._resume(job))
            return
        fl = FlowState(job=job, request=req)
        job.flow = fl
        if isinstance(req, Send) and req.nbytes <= 0:
            job.flow = None
            job.waiting_timer = self.call_later(0.0, lambda: self._resume(job, value=fl))
            return
        self.flows.append(fl)
        self._rates_dirty = True

    def unhang(self, job: Job) -> None:
        if not job.hung:
            return
        job.hung = False
        self._rates_dirty = True
        if job.flow is None and job.waiting_timer is None and not job.done:
            wait_s, job.hung_wait_s = job.hung_wait_s, 0.0
            job.waiting_timer = self.call_later(wait_s, lambda: self._resume(job))

    def _finish_job(self, job: Job) -> None:
        job.done = True
        if job in self.jobs:
            self.jobs.remove(job)
        if job.on_finish is not None:
            job.on_finish(job)
