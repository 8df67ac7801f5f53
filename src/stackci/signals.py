"""Holding SIGINT and SIGTERM back while a step that must not be cut in half runs."""

from __future__ import annotations

import contextlib
import signal

from . import log

logger = log.get("signals")


@contextlib.contextmanager
def signals_held(what: str):
    """Hold SIGINT and SIGTERM back while ``what`` runs (a second Ctrl-C, or the SIGTERM that
    GitHub sends 7.5 s after SIGINT, must not leave a half-removed copy); yields a list that
    holds the signals that arrived. Only SIGKILL stops it. A no-op outside the main thread."""
    received: list[int] = []

    def hold(signum, frame):
        received.append(signum)
        logger.warning("%s received while %s; finishing that first", signal.Signals(signum).name, what)

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, hold)
    except ValueError:  # not the main thread
        pass
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
