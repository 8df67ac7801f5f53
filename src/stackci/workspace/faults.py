"""Fault injection: make a chosen fraction of requests fail, for reliability tests.

A :class:`FaultPlan` says which requests (path regex, default every ``/api/``
call) fail how often (``rate`` 0..1) and how (``kinds``: ``429`` with
``Retry-After``, ``503``, ``drop`` = close the connection without an answer,
``latency`` = answer normally after ``latency_ms``). Draws come from a
``random.Random(seed)`` so a sequential test sees the same faults every time;
setting a plan (again) restarts its sequence.

Set a plan with ``LocalWorkspace(faults=...)``, the ``--fault-*`` options of
``stackci workspace serve``, or ``PUT /stackci-admin/faults`` (server token only);
``GET`` answers ``{plan, matched, injected: {kind: n}, injected_total}`` so a test
can prove that faults really happened; ``DELETE`` turns them off. Faults are
injected before a request is handled, so a retried POST never acts twice.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field

from stackci.errors import ConfigError

KINDS = ("429", "503", "drop", "latency")


@dataclass
class FaultPlan:
    rate: float = 0.0
    kinds: list[str] = field(default_factory=lambda: ["429", "503"])
    path_regex: str = r"^/api/"
    seed: int | None = None
    retry_after: int = 0
    latency_ms: int = 200

    @classmethod
    def from_dict(cls, doc: dict) -> FaultPlan:
        if not isinstance(doc, dict):
            raise ConfigError("a fault plan must be a JSON object")
        unknown = set(doc) - {"rate", "kinds", "path_regex", "seed", "retry_after", "latency_ms"}
        if unknown:
            raise ConfigError(f"unknown fault plan fields: {', '.join(sorted(unknown))}")
        plan = cls()
        if "rate" in doc:
            plan.rate = doc["rate"]
        if "kinds" in doc:
            kinds = doc["kinds"]
            plan.kinds = kinds.split(",") if isinstance(kinds, str) else kinds
        if "path_regex" in doc:
            plan.path_regex = doc["path_regex"]
        if "seed" in doc:
            plan.seed = doc["seed"]
        if "retry_after" in doc:
            plan.retry_after = doc["retry_after"]
        if "latency_ms" in doc:
            plan.latency_ms = doc["latency_ms"]
        plan.validate()
        return plan

    def validate(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)) or not 0 <= self.rate <= 1:
            raise ConfigError(f"fault rate must be a number between 0 and 1, got {self.rate!r}")
        if not isinstance(self.kinds, list) or not self.kinds:
            raise ConfigError("fault kinds must be a non-empty list")
        self.kinds = [str(k).strip() for k in self.kinds]
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise ConfigError(f"unknown fault kinds {bad}; use {', '.join(KINDS)}")
        try:
            re.compile(self.path_regex)
        except (re.error, TypeError) as exc:
            raise ConfigError(f"fault path regex {self.path_regex!r} is invalid: {exc}") from None
        for name in ("retry_after", "latency_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"fault {name} must be a non-negative integer")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError("fault seed must be an integer")

    def as_dict(self) -> dict:
        return {"rate": self.rate, "kinds": list(self.kinds), "path_regex": self.path_regex,
                "seed": self.seed, "retry_after": self.retry_after, "latency_ms": self.latency_ms}


class FaultInjector:
    def __init__(self, plan: FaultPlan | None = None) -> None:
        self._lock = threading.Lock()
        self.injected: dict[str, int] = {}
        self.set_plan(plan or FaultPlan())

    def set_plan(self, plan: FaultPlan) -> None:
        plan.validate()
        with self._lock:
            self.plan = plan
            self._regex = re.compile(plan.path_regex)
            self._random = random.Random(plan.seed)
            self.injected = {k: 0 for k in KINDS}
            self.matched = 0

    def draw(self, path: str) -> str | None:
        """The fault to inject into this request, or None."""
        with self._lock:
            plan = self.plan
            if plan.rate <= 0 or not self._regex.search(path):
                return None
            self.matched += 1
            if self._random.random() >= plan.rate:
                return None
            kind = self._random.choice(plan.kinds)
            self.injected[kind] += 1
            return kind

    def status(self) -> dict:
        with self._lock:
            return {"plan": self.plan.as_dict(), "matched": self.matched, "injected": dict(self.injected),
                    "injected_total": sum(self.injected.values())}
