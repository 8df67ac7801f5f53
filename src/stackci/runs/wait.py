"""Wait for a job run: adaptive polling, one progress line per state change (and a "still
RUNNING" line about once a minute while nothing changes), cancel on interrupt or timeout, and
a classification of how it ended.

The SDK's own waiter sleeps at least a second between polls and says nothing while it
waits; this one polls fast while a run is young (a short run is seen finishing within
a fraction of a second) and backs off to one call every ``max_interval`` seconds, so a
long run costs a bounded number of ``runs/get`` calls per minute. A task ending while the
run goes on restarts the fast polling: the next task may be short.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .. import log

logger = log.get("runs")

TERMINAL = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}

SUCCESS, FAILED, INFRA, TIMEDOUT, CANCELED, SKIPPED = (
    "success", "failed", "infrastructure", "timedout", "canceled", "skipped")

#: termination codes that say the platform, not the user's code, failed
INFRA_CODES = {"CLOUD_FAILURE", "CLUSTER_ERROR", "DRIVER_ERROR", "INTERNAL_ERROR", "STORAGE_ACCESS_ERROR",
               "CLUSTER_REQUEST_LIMIT_EXCEEDED", "WORKSPACE_RUN_LIMIT_EXCEEDED", "MAX_SPARK_CONTEXTS_EXCEEDED",
               "LIBRARY_INSTALLATION_ERROR", "REPOSITORY_CHECKOUT_FAILED", "BUDGET_POLICY_LIMIT_EXCEEDED"}


@dataclass
class Schedule:
    """Poll intervals: ``ramp`` first (a young run is polled densely, so a run of a second
    or two is seen ending within a second), then ``max_interval`` apart (a long run costs
    60 / max_interval calls a minute; with the ramp, a one-minute run costs ten)."""

    ramp: tuple[float, ...] = (0.5, 0.5, 0.5, 1.0, 2.0, 4.0, 8.0)
    max_interval: float = 15.0

    def intervals(self):
        yield from self.ramp
        while True:
            yield self.max_interval


#: set by :func:`use_schedule`; None = :class:`Schedule`'s defaults
_schedule_override: Schedule | None = None


def default_schedule() -> Schedule:
    """The schedule of a :class:`Waiter` given none: the defaults above, unless :func:`use_schedule`
    is in effect (``stackci rehearse`` polls its local workspace, which answers in milliseconds and
    has no rate limit, far more densely than a real workspace should be)."""
    return _schedule_override if _schedule_override is not None else Schedule()


class use_schedule:
    """``with use_schedule(Schedule(...)):`` every Waiter created inside uses it."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def __enter__(self) -> Schedule:
        global _schedule_override
        self.previous, _schedule_override = _schedule_override, self.schedule
        return self.schedule

    def __exit__(self, *exc) -> None:
        global _schedule_override
        _schedule_override = self.previous


def _value(enum) -> str | None:
    return getattr(enum, "value", enum)


def run_state(run) -> tuple[str | None, str | None]:
    """(life-cycle state, result state) of a run or task run, as strings."""
    state = getattr(run, "state", None)
    if state is None:
        return None, None
    return _value(state.life_cycle_state), _value(state.result_state)


def termination(run) -> tuple[str | None, str | None]:
    """(code, type) of ``status.termination_details``, when the service sent them."""
    details = getattr(getattr(run, "status", None), "termination_details", None)
    if details is None:
        return None, None
    return _value(getattr(details, "code", None)), _value(getattr(details, "type", None))


_SEVERITY = [INFRA, TIMEDOUT, FAILED, CANCELED]


def classify(run) -> str:
    """One of success, failed, infrastructure, timedout, canceled, skipped.

    A multi-task run whose task failed ends as INTERNAL_ERROR/FAILED ("Task x failed with
    message: ..."), so the parent's life-cycle state alone does not say whose fault it
    was: the termination details say it where present, else the tasks do.
    """
    life, result = run_state(run)
    code, kind = termination(run)
    if result == "TIMEDOUT" or code == "TIMEOUT":
        return TIMEDOUT
    if result in ("CANCELED", "UPSTREAM_CANCELED") or code in ("CANCELED", "USER_CANCELED"):
        return CANCELED
    if code in INFRA_CODES or kind in ("INTERNAL_ERROR", "CLOUD_FAILURE"):
        return INFRA
    if life == "SKIPPED" or result in ("EXCLUDED", "MAXIMUM_CONCURRENT_RUNS_REACHED", "DISABLED"):
        return SKIPPED
    if result == "SUCCESS":
        return SUCCESS
    tasks = [classify(t) for t in (getattr(run, "tasks", None) or []) if t is not run]
    for outcome in _SEVERITY:
        if outcome in tasks:
            return outcome
    if life == "INTERNAL_ERROR" and code != "RUN_EXECUTION_ERROR":
        return INFRA
    return FAILED


def duration_text(seconds: float) -> str:
    """``45s``, ``5m 00s``, ``1h 05m``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


@dataclass
class WaitResult:
    run: object
    outcome: str
    polls: int
    elapsed: float
    cancelled_by_us: bool = False
    timed_out: bool = False


@dataclass
class Waiter:
    """Poll ``runs/get`` until the run ends, logging each task's state changes."""

    client: object                              # databricks.sdk.WorkspaceClient
    schedule: Schedule = field(default_factory=default_schedule)
    clock: Callable[[], float] = time.monotonic
    on_change: Callable[[str], None] | None = None
    cancel_grace: float = 5.0                   # how long to wait for a cancelled run to stop
    #: the last state seen of every run this waiter watched (run id -> run), so an interrupted
    #: caller can still report a run without asking the workspace again
    last: dict = field(default_factory=dict)
    #: while nothing changes, a "still RUNNING" line after this many seconds of silence (seen at the
    #: next poll: about once a minute); after ``quiet_after`` seconds of waiting, every
    #: ``quiet_interval`` seconds instead, so a run of hours logs a bounded number of lines
    heartbeat: float = 60.0
    quiet_after: float = 1800.0
    quiet_interval: float = 300.0

    def wait(self, run_id: int, *, timeout: float | None = None, stop: threading.Event | None = None,
             label: str = "run") -> WaitResult:
        start = self.clock()
        stop = stop or threading.Event()
        seen: dict[str, tuple] = {}
        polls = 0
        intervals = self.schedule.intervals()
        quiet_since = start          # the last line this wait printed (a change or a heartbeat)
        state_since = start          # when the run entered the state it is in
        try:
            while True:
                # a run that was just triggered has not ended: wait first, then look
                elapsed = self.clock() - start
                if timeout is not None and elapsed >= timeout:
                    self._say(start, f"{label}: timed out after {elapsed:.0f}s, cancelling run {run_id}")
                    run, extra = self.cancel(run_id, start, label)
                    return WaitResult(run, TIMEDOUT, polls + extra, self.clock() - start, True, True)
                pause = next(intervals)
                if timeout is not None:
                    pause = max(0.0, min(pause, timeout - elapsed))
                if stop.wait(pause):
                    raise KeyboardInterrupt
                run = self.client.jobs.get_run(run_id)
                polls += 1
                self.last[run_id] = run
                before = seen.get(label)
                changed, task_ended = self._report(run, seen, start, label)
                if task_ended:
                    intervals = self.schedule.intervals()   # a task ended: the next may be short
                if run_state(run)[0] in TERMINAL:
                    return WaitResult(run, classify(run), polls, self.clock() - start)
                now = self.clock()
                if seen.get(label) != before:
                    state_since = now
                if changed:
                    quiet_since = now
                elif now - quiet_since >= (self.heartbeat if now - start < self.quiet_after
                                           else self.quiet_interval):
                    self._say(start, self._still(run, label, now - state_since))
                    quiet_since = now
        except KeyboardInterrupt:
            self._say(start, f"{label}: interrupted, cancelling run {run_id}")
            try:
                self.cancel(run_id, start, label)
            except Exception as exc:  # the interrupt is what the user must see
                logger.warning("could not cancel run %s: %s", run_id, exc)
            raise

    def cancel(self, run_id: int, start: float, label: str):
        """Cancel the run and wait (bounded) until it has stopped; return its last state."""
        self.client.jobs.cancel_run(run_id)
        deadline = self.clock() + self.cancel_grace
        polls = 0
        run = None
        while self.clock() < deadline:
            run = self.client.jobs.get_run(run_id)
            polls += 1
            self.last[run_id] = run
            if run_state(run)[0] in TERMINAL:
                break
            time.sleep(0.1)
        if run is not None:
            self._say(start, f"{label}: run {run_id} is {'/'.join(filter(None, run_state(run)))}")
        return run, polls

    def _report(self, run, seen: dict, start: float, label: str) -> tuple[bool, bool]:
        """Log state changes, one line each. Returns (whether a line was logged, whether a task of a
        still-running run has just ended).

        A line carries the run's (or task run's) URL the first time it is seen and when it
        ends other than successfully: that is the link someone reading the log wants."""
        task_ended = changed = False
        items = [(label, run)] + [(f"{label} › {t.task_key}", t) for t in (getattr(run, "tasks", None) or [])]
        for name, item in items:
            state = run_state(item)
            if state != seen.get(name) and state[0] is not None:
                first = name not in seen
                if item is not run and state[0] in TERMINAL and not first:
                    task_ended = True
                seen[name] = state
                changed = True
                text = state[0] + (f" {state[1]}" if state[1] else "")
                bad = state[0] in ("TERMINATED", "INTERNAL_ERROR") and state[1] not in ("SUCCESS", None)
                url = getattr(item, "run_page_url", None) if first or bad else None
                self._say(start, f"{name}: {text}" + (f" ({url})" if url else ""))
        return changed, task_ended and run_state(run)[0] not in TERMINAL

    @staticmethod
    def _still(run, label: str, in_state: float) -> str:
        """``label: still RUNNING (task Train, 5m 00s)``: the run's state, its active tasks (at most
        three named) and how long the run has been in that state."""
        life = run_state(run)[0] or "active"
        active = [t.task_key for t in (getattr(run, "tasks", None) or [])
                  if run_state(t)[0] not in TERMINAL and run_state(t)[0] is not None]
        running = [t.task_key for t in (getattr(run, "tasks", None) or []) if run_state(t)[0] == "RUNNING"]
        keys = running or active
        named = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
        what = f"task{'s' if len(keys) > 1 else ''} {named}, " if keys else ""
        return f"{label}: still {life} ({what}{duration_text(in_state)})"

    def _say(self, start: float, message: str) -> None:
        line = f"[{self.clock() - start:6.1f}s] {message}"
        if self.on_change is not None:
            self.on_change(line)
        else:
            logger.info("%s", line)
