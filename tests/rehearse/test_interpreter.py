"""The project's interpreter of a rehearsal with ``--python``: the requirements never go into an
interpreter outside a virtual environment."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from stackci.ci import LocalPlatform
from stackci.context import App
from stackci.errors import ConfigError
from stackci.rehearse.sandbox import probe_interpreter, project_interpreter

#: the interpreter this suite's venv was made from: a Python outside any virtual environment
BASE = getattr(sys, "_base_executable", None)
needs_base = pytest.mark.skipif(not BASE or sys.prefix == sys.base_prefix,
                                reason="this suite does not run in a virtual environment")


def facts(python: str) -> dict:
    out = subprocess.run([python, "-c", "import json, sys; print(json.dumps({'prefix': sys.prefix, "
                                        "'base': sys.base_prefix, 'version': sys.version}))"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.fixture
def app():
    return App(platform=LocalPlatform({}), environ={})


@needs_base
def test_a_python_outside_a_venv_is_the_base_of_a_cached_venv_with_the_requirements(app, tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pip\n")                       # already in every venv: no download
    cache = tmp_path / "cache"
    assert probe_interpreter(BASE)[0] is False
    first = project_interpreter(app, python=BASE, requirements=[requirements], cache_dir=cache, project=tmp_path)
    assert Path(first.python).is_relative_to(cache), "never the interpreter itself"
    assert first.requirements == [], "installed into the venv, not left for the unit-tests stage"
    made = facts(first.python)
    assert made["prefix"] != made["base"] and made["version"] == facts(BASE)["version"]
    assert first.how.startswith("new venv ") and f"from --python {BASE}" in first.how
    stamp = json.loads((Path(first.python).parents[1] / ".stackci-complete").read_text())
    assert stamp["requirements"] == [str(requirements)] and stamp["python"] == facts(BASE)["version"]
    again = project_interpreter(app, python=BASE, requirements=[requirements], cache_dir=cache, project=tmp_path)
    assert again.python == first.python and again.how.startswith("cached venv ")


def test_a_venv_interpreter_is_used_as_it_is(app, tmp_path):
    folder = tmp_path / "own-venv"
    venv.EnvBuilder(with_pip=False).create(folder)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pip\n")
    python = str(folder / "bin" / "python")
    chosen = project_interpreter(app, python=python, requirements=[requirements], cache_dir=tmp_path / "cache",
                                 project=tmp_path)
    assert chosen.python == python and chosen.requirements == [requirements]
    assert "(a virtual environment)" in chosen.how
    assert not (tmp_path / "cache").exists()


def test_without_requirements_python_is_used_as_given(app, tmp_path):
    chosen = project_interpreter(app, python=sys.executable, requirements=[], cache_dir=tmp_path / "cache",
                                 project=tmp_path)
    assert chosen.python == sys.executable and chosen.requirements == []


def test_something_that_is_not_python_is_one_line(app, tmp_path):
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\necho not python\n")
    fake.chmod(0o755)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pip\n")
    with pytest.raises(ConfigError, match="does not run as a Python interpreter"):
        project_interpreter(app, python=str(fake), requirements=[requirements], cache_dir=tmp_path / "cache",
                            project=tmp_path)
