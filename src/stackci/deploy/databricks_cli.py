"""``--engine cli``: hand validate / plan / deploy / destroy to the official ``databricks bundle``.

For bundles that use what stackci's own engine does not deploy (pipelines, serving endpoints,
permissions, artifacts built from source, ...). The Databricks CLI must be on PATH and new
enough (``databricks version``: 0.218.0 for bundles, 0.267.0 for ``bundle plan``); the legacy
Python ``databricks-cli`` 0.x has no bundle commands and is refused with an install hint.

The command runs in the bundle folder with this process's whole environment (credentials,
``BUNDLE_VAR_*``); ``-t``, ``--var``, ``--force-lock``, ``--fail-on-active-runs`` and
``--profile`` are passed on, ``--host`` becomes ``DATABRICKS_HOST``. Its output is outside
text: every line is logged neutralised and with secrets redacted, with progress lines (what
runs, how long it has run, a heartbeat while it is quiet). Its exit code becomes ours:
0 → 0; for validate and plan a failure is bad configuration (2), for deploy and destroy a
failed deploy (1); a SIGINT/SIGTERM of ours is passed on to it (130).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from .. import log
from ..errors import ConfigError, Interrupted, RunFailed

logger = log.get("cli")

MIN_VERSION = (0, 218, 0)
#: seconds without output after which a progress line says the command is still running
HEARTBEAT = 30.0
INSTALL_HINT = ("install the Databricks CLI (https://docs.databricks.com/dev-tools/cli/install.html): in GitHub "
                "Actions 'uses: databricks/setup-cli@<sha>', elsewhere 'curl -fsSL https://raw.githubusercontent.com/"
                "databricks/setup-cli/main/install.sh | sh'; or leave out --engine cli to use stackci's engine")
_VERSION = re.compile(r"\bv?(\d+)\.(\d+)\.(\d+)\b")


def _text(version: tuple) -> str:
    return ".".join(map(str, version))


def locate(environ) -> str:
    """The ``databricks`` executable on PATH (ConfigError with an install hint when missing)."""
    found = shutil.which("databricks", path=environ.get("PATH") or os.defpath)
    if not found:
        raise ConfigError("--engine cli needs the Databricks CLI, but there is no 'databricks' on PATH",
                          hint=INSTALL_HINT)
    return found


def version(executable: str, environ) -> tuple[int, int, int]:
    """``databricks version`` → (major, minor, patch); ConfigError when it is not the Databricks CLI."""
    try:
        done = subprocess.run([executable, "version"], capture_output=True, text=True, timeout=60,
                              env=dict(environ), stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(f"cannot run '{executable} version': {type(exc).__name__}: {exc}",
                          hint=INSTALL_HINT) from None
    said = " ".join((done.stdout + " " + done.stderr).split())[:200]
    m = _VERSION.search(done.stdout) if done.returncode == 0 else None
    if m is None:
        raise ConfigError(f"{executable} is not the Databricks CLI {_text(MIN_VERSION)} or newer: 'databricks "
                          f"version' answered {said or '(nothing)'} (exit {done.returncode}); the legacy Python "
                          "databricks-cli has no bundle commands", hint=INSTALL_HINT)
    found = tuple(int(g) for g in m.groups())
    if found < MIN_VERSION:
        raise ConfigError(f"{executable} is the Databricks CLI {_text(found)}; bundle commands need "
                          f"{_text(MIN_VERSION)} or newer", hint=INSTALL_HINT)
    return found  # type: ignore[return-value]


def arguments(command: str, *, target=None, variables=(), profile=None, force_lock=False,
              fail_on_active_runs=False, output: str | None = None) -> list[str]:
    """``bundle <command>`` with stackci's options in the Databricks CLI's words."""
    argv = ["bundle", command]
    if target:
        argv += ["-t", target]
    for item in variables or ():
        argv.append(f"--var={item}")          # one name=value each; values may contain spaces
    if profile:
        argv += ["-p", profile]
    if force_lock:
        argv.append("--force-lock")
    if fail_on_active_runs:
        argv.append("--fail-on-active-runs")
    if command == "destroy":
        argv.append("--auto-approve")      # stackci destroy is the explicit request; no prompt in CI
    if output == "json":
        argv += ["-o", "json"]
    return argv


def check_flags(command: str, **given) -> None:
    """Options that have no meaning for the Databricks CLI are refused, not silently dropped."""
    bad = [name for name, value in given.items() if value]
    if bad:
        raise ConfigError(f"{', '.join(bad)} cannot be used with --engine cli ({command})",
                          hint="leave them out, or use stackci's engine (--engine stackci)")


class Delegate:
    """Runs ``databricks bundle ...`` for one stackci command."""

    def __init__(self, app, command: str, project: Path, host: str | None = None) -> None:
        self.app = app
        self.command = command          # "validate" | "plan" | "deploy" | "destroy"
        self.project = Path(project)
        self.env = dict(app.environ)
        if host and host.strip():
            from ..dbx import check_host
            self.env["DATABRICKS_HOST"] = check_host(host, "--host")
        self.env.setdefault("DATABRICKS_CLI_UPSTREAM", "stackci")
        from ..dbx import CREDENTIAL_VARIABLES

        for name in CREDENTIAL_VARIABLES:
            app.platform.mask(self.env.get(name))
        if not self.project.is_dir():
            raise ConfigError(f"--project {project} is not a folder", hint="pass the folder holding databricks.yml")
        self.executable = locate(self.env)
        self.version = version(self.executable, self.env)

    def require(self, needed: tuple, what: str) -> None:
        if self.version < needed:
            raise ConfigError(f"{what} needs the Databricks CLI {_text(needed)} or newer; {self.executable} is "
                              f"{_text(self.version)}", hint=INSTALL_HINT)

    def run(self, argv: list[str], *, capture_stdout: bool = False, fail_as_config: bool = False) -> str:
        """Run ``databricks <argv>`` in the bundle folder; return its stdout when captured."""
        shown = " ".join(["databricks", *argv])
        progress = log.Progress(logger, shown, clock=self.app.clock)
        progress.say(f"running the Databricks CLI {_text(self.version)} ({self.executable}) in {self.project}")
        try:
            proc = subprocess.Popen([self.executable, *argv], cwd=self.project, env=self.env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, encoding="utf-8", errors="replace", bufsize=1)
        except OSError as exc:
            raise ConfigError(f"cannot run {self.executable}: {exc}", hint=INSTALL_HINT) from None
        lines: queue.Queue = queue.Queue()
        captured: list[str] = []

        def pump(stream, name):
            for line in stream:
                lines.put((name, line.rstrip("\n")))
            lines.put((name, None))

        threads = [threading.Thread(target=pump, args=(proc.stdout, "stdout"), daemon=True),
                   threading.Thread(target=pump, args=(proc.stderr, "stderr"), daemon=True)]
        for t in threads:
            t.start()
        open_streams, quiet_since = 2, time.monotonic()
        try:
            while open_streams:
                try:
                    name, line = lines.get(timeout=1.0)
                except queue.Empty:
                    if time.monotonic() - quiet_since >= HEARTBEAT:
                        progress.say("still running")
                        quiet_since = time.monotonic()
                    continue
                if line is None:
                    open_streams -= 1
                    continue
                quiet_since = time.monotonic()
                if capture_stdout and name == "stdout":
                    captured.append(line)
                else:
                    logger.info("  %s", line)      # neutralised and redacted by the logging filter
            code = proc.wait()
        except KeyboardInterrupt:
            self._stop(proc)
            raise Interrupted(f"interrupted; {shown} was stopped") from None
        progress.say(f"finished: exit {code}")
        if code != 0:
            how = f"was killed by signal {-code}" if code < 0 else f"failed (exit {code})"
            cls = ConfigError if fail_as_config and code > 0 else RunFailed
            raise cls(f"{shown} {how}", hint="see its output above")
        return "\n".join(captured)

    @staticmethod
    def _stop(proc: subprocess.Popen) -> None:
        """Pass the interrupt on: SIGINT, then SIGTERM, then kill."""
        for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 5)):
            try:
                proc.send_signal(sig)
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue
            except OSError:
                return
        proc.kill()
        proc.wait()
