"""``stackci rehearse`` as a user runs it: a subprocess, on the example project or a broken copy
of it, with one project virtual environment shared by the whole session."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rehearse_support import EXAMPLE, Rehearsed, clean_env


@pytest.fixture(scope="session")
def rehearse_cache(tmp_path_factory):
    """The cache of project virtual environments: built by the first rehearsal, reused after."""
    return tmp_path_factory.mktemp("rehearse-cache")


@pytest.fixture(scope="session")
def rehearse(rehearse_cache, tmp_path_factory):
    def run(*args: str, project: Path | None = EXAMPLE, keep: bool = True, cwd: Path | None = None,
            env: dict | None = None, timeout: float = 600) -> Rehearsed:
        work = tmp_path_factory.mktemp("rehearsal") / "work"
        argv = [sys.executable, "-m", "stackci", "rehearse", *([str(project)] if project else []),
                "--cache-dir", str(rehearse_cache), "--work-dir", str(work), "-o", "json",
                *(["--keep"] if keep else []), *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd or work.parent,
                              env={**clean_env(), **(env or {})})
        return Rehearsed(proc.returncode, proc.stdout, proc.stderr, work)
    return run


@pytest.fixture
def broken_copy(tmp_path):
    """A copy of the example project with ``edits`` (relative path -> function of the old text)."""
    def make(edits: dict) -> Path:
        root = tmp_path / "project"
        shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", ".stackci"))
        for rel, edit in edits.items():
            path = root / rel
            path.write_text(edit(path.read_text() if path.exists() else ""))
        return root
    return make
