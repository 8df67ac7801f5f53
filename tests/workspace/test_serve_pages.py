"""``stackci workspace serve`` as a user starts it: one start-up line and a hint where to look,
its pages in a browser, and a --help without markup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

STACKCI = str(Path(sys.executable).with_name("stackci"))


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(("STACKCI_", "DATABRICKS_", "GITHUB_", "TF_BUILD"))}


def test_serve_says_where_it_listens_once_and_serves_its_pages(tmp_path):
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([STACKCI, "workspace", "serve", "--ready-file", str(ready)], env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        page = requests.get(info["url"] + "/", timeout=10)
        assert page.status_code == 200 and "Jobs and recent runs" in page.text and info["token"] not in page.text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.splitlines() == [f"url={info['url']}", f"token={info['token']}"]
    lines = err.strip().splitlines()
    assert sum(info["url"] in line for line in lines) == 2, err
    assert lines[0].startswith(f"local workspace listening on {info['url']} (data in ")
    assert lines[1] == f"open {info['url']}/ in a browser for its jobs and runs; stop it with Ctrl-C or SIGTERM"


def test_serve_help_has_no_markup():
    out = subprocess.run([STACKCI, "workspace", "serve", "--help"], capture_output=True, text=True, env=clean_env(),
                         timeout=60).stdout
    assert "``" not in out and "url=URL and token=TOKEN" in out
    flat = " ".join(out.split())
    assert "[env: STACKCI_" not in flat, "each variable is named once, by click"
    assert flat.count("STACKCI_WORKSPACE_PORT") == 1
