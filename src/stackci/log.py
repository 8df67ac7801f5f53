"""stdlib logging for stackci: one handler on stderr, secrets redacted, commands neutralised.

stdout is reserved for machine-readable results and platform commands; people read stderr.
"""

from __future__ import annotations

import logging
import sys
import time

from .ci import Platform

LOGGER_NAME = "stackci"


class _PlatformFilter(logging.Filter):
    """Redacts registered secrets and makes the message inert for the CI command parser."""

    def __init__(self, platform: Platform) -> None:
        super().__init__()
        self.platform = platform

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.platform.neutralise(self.platform.redact(record.exc_text))
        record.msg = self.platform.neutralise(self.platform.redact(message))
        record.args = None
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (tests swap it),
    unless a stream is set explicitly."""

    _explicit = None

    def __init__(self) -> None:
        super().__init__(None)
        self._explicit = None

    @property
    def stream(self):
        return self._explicit if self._explicit is not None else sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        self._explicit = value if value is not sys.stderr else None


def setup(platform: Platform, verbose: bool = False) -> logging.Logger:
    """Configure the ``stackci`` logger once per process (idempotent)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if getattr(handler, "_stackci", False):
            logger.removeHandler(handler)
    handler = _StderrHandler()
    handler._stackci = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(message)s" if not verbose else
                                           "%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.addFilter(_PlatformFilter(platform))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    return logger


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}")


class Progress:
    """Says what a long operation is doing and how long it has taken."""

    def __init__(self, logger: logging.Logger, what: str, clock=time.monotonic) -> None:
        self.logger = logger
        self.what = what
        self.clock = clock
        self.start = clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def say(self, message: str) -> None:
        self.logger.info("[%6.1fs] %s: %s", self.elapsed(), self.what, message)
