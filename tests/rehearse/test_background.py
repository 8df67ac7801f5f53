"""The rehearsal's background thread: the local workspace it starts (or the error it could not
start with) reaches the main thread, and the collector it turned off is on again afterwards."""

from __future__ import annotations

import gc
import threading

import pytest

from stackci.errors import ConfigError
from stackci.rehearse import flow


@pytest.fixture
def collector():
    """Whatever a test does to the collector is undone after it."""
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def test_the_workspace_started_in_the_background_is_handed_over(collector, monkeypatch):
    monkeypatch.setattr(flow, "WARM", ("json",))
    gc.enable()
    threads = []

    def start():
        threads.append(threading.current_thread())
        return "the workspace"

    background = flow.Background(start)
    assert background.started() == "the workspace"
    assert threads[0] is not threading.main_thread()
    background.join()
    background.join()                     # twice is harmless
    assert gc.isenabled() and gc.get_freeze_count() > 0, "imports frozen, collector back on"


def test_a_workspace_that_cannot_start_fails_the_stage_that_waits_for_it(collector, monkeypatch):
    monkeypatch.setattr(flow, "WARM", ("json",))
    gc.enable()

    def start():
        raise ConfigError("cannot use the data directory /x: it is locked")

    background = flow.Background(start)
    with pytest.raises(ConfigError, match="it is locked"):
        background.started()
    background.join()
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off(collector, monkeypatch):
    monkeypatch.setattr(flow, "WARM", ())
    gc.disable()
    background = flow.Background(lambda: None)
    background.join()
    assert not gc.isenabled()
