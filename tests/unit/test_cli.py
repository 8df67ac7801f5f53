from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import click
import pytest

from stackci import __version__
from stackci.cli import COMMANDS, cli


def stackci(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "stackci", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kw)


def test_version_and_help():
    result = stackci("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"stackci {__version__}"
    result = stackci("--help")
    assert result.returncode == 0
    assert "unit-tests" in result.stdout


def test_help_does_not_import_heavy_modules():
    code = ("import sys\nfrom stackci.__main__ import main\n"
            "rc = main(['--help'])\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('databricks', 'requests', 'yaml'))\n"
            "print('HEAVY', heavy)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def _options():
    for name in COMMANDS:
        command = cli.get_command(click.Context(cli), name)
        if command is None:
            continue
        stack = [(name, command)]
        while stack:
            path, cmd = stack.pop()
            if isinstance(cmd, click.Group):
                stack += [(f"{path} {n}", c) for n, c in cmd.commands.items()]
                continue
            for param in cmd.params:
                if isinstance(param, click.Option) and param.name != "help":
                    yield path, param


def test_every_option_has_a_stackci_envvar():
    options = list(_options())
    assert options
    for path, option in options:
        assert option.envvar and str(option.envvar).startswith("STACKCI_"), f"{path} {option.opts}"


def test_unknown_command_and_bad_option_are_one_line_exit_2():
    for args in (["nope"], ["unit-tests", "--slowest", "many"]):
        result = stackci(*args)
        assert result.returncode == 2
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr


def test_errors_are_workflow_commands_on_github(tmp_path):
    result = stackci("unit-tests", "--project", str(tmp_path / "missing"), env={"GITHUB_ACTIONS": "true"})
    assert result.returncode == 2
    assert result.stdout.startswith("::error title=stackci%3A bad input::project directory")


def test_sigterm_and_sigint_exit_130(make_project, tmp_path):
    marker = tmp_path / "pytest-started"
    project = make_project({"tests/test_slow.py": "import pathlib, time\n\n"
                            "def test_slow():\n"
                            f"    pathlib.Path({str(marker)!r}).touch()\n    time.sleep(60)\n"})
    for sig in (signal.SIGTERM, signal.SIGINT):
        marker.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-m", "stackci", "unit-tests", "--project", str(project),
                                 "--python", sys.executable], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:   # the project's test is running
            time.sleep(0.05)
        assert marker.exists(), "pytest never started the project's test"
        started = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 130, err
        assert time.monotonic() - started < 7.5
        assert "interrupted" in err
        assert "Traceback" not in err


@pytest.mark.parametrize("columns", ["50", "72", "80", "100", "160"])
def test_fast_help_is_the_click_help(columns):
    """`stackci --help` is answered without click; its text must be what click renders."""
    env = dict(os.environ, COLUMNS=columns)
    fast = subprocess.run([sys.executable, "-m", "stackci", "--help"], capture_output=True, text=True, env=env)
    slow = subprocess.run([sys.executable, "-c", "import sys\nfrom stackci.__main__ import main\n"
                           "sys.exit(main(['--help']))"], capture_output=True, text=True, env=env)
    assert fast.returncode == slow.returncode == 0
    assert fast.stdout == slow.stdout
    assert "unit-tests" in fast.stdout and "Commands:" in fast.stdout


def test_help_and_version_do_not_import_click():
    code = ("import sys\nsys.argv = ['stackci', '--help']\nfrom stackci import __main__ as m\n"
            "assert m._fast_path(['--help']) and m._fast_path(['--version'])\n"
            "assert not m._fast_path(['unit-tests', '--help'])\n"
            "print('CLICK', 'click' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "CLICK False" in result.stdout


def test_every_subcommand_help_names_the_environment_variables():
    for name in ("deploy", "integration-test", "rehearse", "workspace serve"):
        result = stackci(*name.split(), "--help")
        assert result.returncode == 0, result.stderr
        entries: list[str] = []          # one option per entry: its first line and the wrapped ones
        for line in result.stdout.split("Options:", 1)[1].splitlines():
            if line.startswith("  -"):
                entries.append(line)
            elif entries and line.startswith("    "):
                entries[-1] += " " + line.strip()
        options = [" ".join(e.split()) for e in entries if not e.lstrip().startswith("-h, --help")]
        assert options and all("[env var: STACKCI_" in e for e in options), (name, options)


def test_no_command_prints_the_help_not_an_error():
    for args, usage in (((), "Usage: stackci [OPTIONS] COMMAND"), (("workspace",), "Usage: stackci workspace")):
        result = stackci(*args)
        assert result.returncode == 0 and result.stdout.startswith(usage), result
        assert "error" not in result.stderr


def test_a_usage_error_points_at_the_subcommand_help():
    result = stackci("deploy", "-t")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: stackci: bad input: Option '-t' requires an argument. (see 'stackci deploy --help')"]
