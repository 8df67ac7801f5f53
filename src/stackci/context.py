"""What every subcommand gets: the CI platform, verbosity and a clock."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from .ci import Platform, detect


@dataclass
class App:
    platform: Platform
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    verbose: bool = False
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "App":
        env = os.environ if environ is None else environ
        return cls(platform=detect(env), environ=env)
