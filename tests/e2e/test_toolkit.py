"""scripts/install-toolkit.sh as every block runs it: the environment it builds holds exactly
the versions of scripts/constraints.txt, and STACKCI_TOOLKIT_SCOPE=job keeps the environment
in the job's temporary folder (for self-hosted runners that are not ephemeral)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITHUB_", "RUNNER_", "STACKCI_", "AGENT_", "TF_", "BUILD_", "SYSTEM_"))}
    env.update(extra)
    return env


def install(lib: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(lib / "scripts" / "install-toolkit.sh")], env=clean_env(**env),
                          capture_output=True, text=True, timeout=600)


def test_the_toolkit_holds_exactly_the_pinned_versions(act_env):
    """The act_env fixture built the toolkit with install-toolkit.sh, as the actions do."""
    [python] = list(Path(act_env["toolkit"]).glob("*/bin/python"))
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                            capture_output=True, text=True, check=True).stdout
    installed = {canonical(d["name"]): d["version"] for d in json.loads(listed)}
    pins = {}
    for line in (act_env["lib"] / "scripts" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            spec, _, marker = line.partition(";")
            name, version = spec.strip().split("==")
            pins.setdefault(canonical(name), []).append(version)
    unpinned = {n: v for n, v in installed.items() if n not in pins and n not in ("pip", "setuptools", "stackci")}
    assert unpinned == {}, f"installed without a pin (floating): {unpinned}"
    assert {n: v for n, v in installed.items() if n in pins and v not in pins[n]} == {}
    assert subprocess.run([str(python), "-m", "pip", "check"], capture_output=True).returncode == 0
    # the generator, run in that environment, writes the file as it is: the pins are the closure
    check = subprocess.run([str(python), str(act_env["lib"] / "scripts" / "update-constraints.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_job_scope_builds_in_the_job_temp_folder_and_reuses_it_within_the_job(act_env, tmp_path):
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    shared_before = sorted(p.name for p in Path(act_env["toolkit"]).iterdir())
    outputs = tmp_path / "github_output"
    env = dict(STACKCI_TOOLKIT_SCOPE="job", RUNNER_TEMP=str(runner_temp), GITHUB_OUTPUT=str(outputs),
               RUNNER_TOOL_CACHE=str(act_env["toolkit"]), STACKCI_TOOLKIT_DIR=str(act_env["toolkit"]))
    first = install(act_env["lib"], **env)
    assert first.returncode == 0, first.stderr
    assert "installing stackci" in first.stderr and "(job," in first.stderr
    exe = Path(re.search(r"^executable=(.*)$", outputs.read_text(), re.M).group(1))
    assert exe.is_relative_to(runner_temp / "stackci-toolkit")
    assert subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout.startswith("stackci ")
    second = install(act_env["lib"], **env)          # the next block of the same job
    assert second.returncode == 0 and "reusing stackci" in second.stderr, second.stderr
    assert sorted(p.name for p in Path(act_env["toolkit"]).iterdir()) == shared_before, "the shared cache is untouched"


@pytest.mark.parametrize("env, message", [
    ({"STACKCI_TOOLKIT_SCOPE": "everyone"}, "STACKCI_TOOLKIT_SCOPE is 'everyone'; set it to shared"),
    ({"STACKCI_TOOLKIT_SCOPE": "job"}, "STACKCI_TOOLKIT_SCOPE=job needs the runner's per-job temporary folder"),
])
def test_a_bad_scope_is_one_line_and_exit_2(act_env, tmp_path, env, message):
    done = install(act_env["lib"], STACKCI_TOOLKIT_DIR=str(tmp_path / "cache"), HOME=str(tmp_path), **env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "cache").exists(), "nothing was created"


def test_the_install_takes_its_versions_from_the_constraints(act_env, tmp_path):
    """A pin outside stackci's own range makes the install fail: pip is given the file."""
    import shutil

    lib = tmp_path / "stackci"
    lib.mkdir()
    for part in ("pyproject.toml", "README.md", "scripts", "src"):
        src = act_env["lib"] / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, lib / part)
    pins = lib / "scripts" / "constraints.txt"
    pins.write_text(re.sub(r"^click==\S+", "click==0.0.0.dev0", pins.read_text(), flags=re.M))
    assert "click==0.0.0.dev0\n" in pins.read_text()
    done = install(lib, STACKCI_TOOLKIT_DIR=str(tmp_path / "cache"))
    assert done.returncode != 0
    assert "conflicting dependencies" in done.stderr, done.stderr[-2000:]
    assert not list((tmp_path / "cache").glob("*/.complete")), "a failed install is never reused"
