"""The rehearsal's repositories: a bare origin holding what a push of the project would hold,
written without a developer clone, and CI checkouts cloned from it (real git throughout)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rehearse_support import git
from stackci.rehearse import sandbox as sb

ODD_NAME = 'notes with "quotes", a tab\tand ünïcode.md'


def tree(origin: Path, ref: str) -> dict[str, tuple[str, bytes]]:
    """path -> (mode, content) of every file of ``ref`` in ``origin``."""
    out = subprocess.run(["git", "ls-tree", "-r", "-z", ref], cwd=origin, check=True, capture_output=True).stdout
    files = {}
    for entry in filter(None, out.split(b"\0")):
        meta, path = entry.split(b"\t", 1)
        mode, _, sha = meta.split()
        content = subprocess.run(["git", "cat-file", "blob", sha], cwd=origin, check=True,
                                 capture_output=True).stdout
        files[os.fsdecode(path)] = (mode.decode(), content)
    return files


def write(root: Path, files: dict[str, bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    write(root, {"databricks.yml": b"bundle:\n  name: b\n", "src/job.py": b"print('job')\n",
                 "run.sh": b"#!/bin/sh\necho hi\n", ODD_NAME: b"odd\n", ".gitignore": b"*.log\ndata/\n",
                 "train.log": b"ignored\n", "data/big.csv": b"a,b\n", "__pycache__/job.cpython-311.pyc": b"\0",
                 ".venv/bin/python": b"", "src/empty.txt": b""})
    (root / "run.sh").chmod(0o755)
    return root


def test_a_folder_outside_git_is_committed_as_git_add_would_take_it(project, tmp_path):
    box = sb.Sandbox.make(project, tmp_path / "work")
    files = box.create_repositories("b")
    expected = {"databricks.yml", "src/job.py", "run.sh", ODD_NAME, ".gitignore", "src/empty.txt"}
    assert set(files) == expected, "its .gitignore, caches and virtualenvs stay out"
    feature = tree(box.origin, f"refs/heads/{sb.FEATURE_BRANCH}")
    assert set(feature) == expected
    for rel in expected:
        assert feature[rel] == ("100755" if rel == "run.sh" else "100644", (project / rel).read_bytes()), rel
    # main is the initial empty commit, the feature branch one commit on top of it, by the rehearsal
    main = git(box.origin, "rev-parse", "refs/heads/main")
    assert tree(box.origin, "refs/heads/main") == {}
    assert git(box.origin, "rev-parse", f"refs/heads/{sb.FEATURE_BRANCH}^") == main
    assert git(box.origin, "log", "-1", "--format=%an <%ae>|%s", f"refs/heads/{sb.FEATURE_BRANCH}") == \
        f"{sb.IDENTITY[0]} <{sb.IDENTITY[1]}>|feat: add b (copied by stackci rehearse from {project})"
    assert sorted(p.name for p in box.base.iterdir()) == ["gitconfig", "origin.git", "reports", "tmp"], \
        "no developer clone is left to remove"
    # a CI checkout of the pull request has the same files
    checkout = box.clone("ci-pr", sb.FEATURE_BRANCH)
    assert (checkout / ODD_NAME).read_bytes() == b"odd\n" and os.access(checkout / "run.sh", os.X_OK)
    assert git(checkout, "status", "--porcelain") == ""
    assert git(checkout, "rev-parse", "--abbrev-ref", "HEAD") == sb.FEATURE_BRANCH


def test_a_project_in_git_is_committed_with_what_git_tracks_and_would_add(project, tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)       # no excludes of whoever runs the tests
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "add", "databricks.yml", "src/job.py", ".gitignore"], cwd=project, check=True)
    subprocess.run(["git", "add", "-f", "train.log"], cwd=project, check=True)   # tracked although ignored
    box = sb.Sandbox.make(project, tmp_path / "work")
    files = box.create_repositories("b")
    # tracked files, and untracked ones its .gitignore does not exclude (it says nothing of caches here)
    expected = {"databricks.yml", "src/job.py", ".gitignore", "train.log", "run.sh", ODD_NAME, "src/empty.txt",
                ".venv/bin/python", "__pycache__/job.cpython-311.pyc"}
    assert set(files) == expected
    assert set(tree(box.origin, f"refs/heads/{sb.FEATURE_BRANCH}")) == expected


def test_a_failing_git_says_which_command_failed(project, tmp_path):
    box = sb.Sandbox.make(project, tmp_path / "work")
    box.create_repositories("b")
    from stackci.errors import RunFailed

    with pytest.raises(RunFailed, match=r"git clone -q failed in .*work: fatal: Remote branch no-such-branch not found"):
        box.clone("ci-x", "no-such-branch")


def test_a_file_bigger_than_one_piece_arrives_whole(tmp_path):
    root = tmp_path / "project"
    blob = os.urandom((3 << 20) + 123)             # fed to git in 1 MiB pieces
    write(root, {"databricks.yml": b"bundle:\n  name: b\n", "model/weights.bin": blob})
    box = sb.Sandbox.make(root, tmp_path / "work")
    box.create_repositories("b")
    assert tree(box.origin, f"refs/heads/{sb.FEATURE_BRANCH}")["model/weights.bin"] == ("100644", blob)
