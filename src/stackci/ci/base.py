"""What every CI platform offers stackci."""

from __future__ import annotations

import contextlib
import re
import sys
import threading
from typing import IO, Iterator, Mapping

_OUTPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def valid_output_name(name: str) -> bool:
    """Output names are identifiers with dashes: no newline, ``=``, ``<<``, ``;`` or ``]``."""
    return bool(_OUTPUT_NAME.match(name))


class Platform:
    """One interface; subclasses implement the primitive commands."""

    name = "local"

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.outputs: dict[str, str] = {}
        self._secrets: list[str] = []
        self._lock = threading.Lock()
        self.stdout: IO[str] = sys.stdout

    # -- outputs ---------------------------------------------------------------
    def set_output(self, name: str, value: object) -> None:
        """Publish a step output. ``name`` must be a plain identifier (``passed``, ``junit-xml``)."""
        if not valid_output_name(name):
            raise ValueError(f"invalid output name {name!r}: use letters, digits, '_' and '-'")
        text = "" if value is None else str(value)
        with self._lock:
            self.outputs[name] = text
            self._write_output(name, text)

    def _write_output(self, name: str, value: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- secrets ---------------------------------------------------------------
    def mask(self, secret: str | None) -> None:
        """Tell the platform never to show ``secret``; also registered with the logging filter."""
        if not secret or not secret.strip():
            return
        with self._lock:
            if secret in self._secrets:
                return
            self._secrets.append(secret)
            for line in secret.splitlines():
                if line.strip() and line not in self._secrets:
                    self._secrets.append(line)
            self._write_mask(secret)

    def _write_mask(self, secret: str) -> None:
        pass

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(self._secrets)

    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced by ``***`` (longest first)."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    # -- annotations -----------------------------------------------------------
    def annotate(self, level: str, message: str, *, file: str | None = None, line: int | None = None,
                 col: int | None = None, title: str | None = None) -> None:
        """An error/warning/notice attached to ``file:line`` where the platform supports it."""
        if level not in ("error", "warning", "notice"):
            raise ValueError(f"unknown annotation level {level!r}")
        self._annotate(level, self.redact(message), file=file, line=line, col=col,
                       title=self.redact(title) if title else None)

    def error(self, message: str, **where) -> None:
        self.annotate("error", message, **where)

    def warning(self, message: str, **where) -> None:
        self.annotate("warning", message, **where)

    def _annotate(self, level, message, *, file, line, col, title) -> None:  # pragma: no cover
        raise NotImplementedError

    # -- log groups --------------------------------------------------------------
    def start_group(self, title: str) -> None:
        pass

    def end_group(self) -> None:
        pass

    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        self.start_group(title)
        try:
            yield
        finally:
            self.end_group()

    # -- step summary ------------------------------------------------------------
    def append_summary(self, markdown: str) -> None:
        """Append Markdown to the step summary (nothing printed on stdout)."""

    def flush(self) -> None:
        """Called once when the command ends (Azure uploads the summary here)."""

    # -- untrusted text ------------------------------------------------------------
    def print_untrusted(self, text: str) -> None:
        """Print outside text (test names, traces, notebook output) so it can never act as a command."""
        with self.untrusted_block() as write:
            write(text)

    @contextlib.contextmanager
    def untrusted_block(self) -> Iterator:
        """A writer for a stream of outside text; commands stay inert while the block is open."""
        def write(text: str) -> None:
            self._emit(self.redact(text))
        yield write

    def _emit(self, text: str) -> None:
        if text and not text.endswith("\n"):
            text += "\n"
        self.stdout.write(text)
        self.stdout.flush()

    def neutralise(self, text: str) -> str:
        """``text`` (possibly many lines) made inert for this platform's command parser."""
        return text

    def command(self, line: str) -> None:
        """Write one trusted workflow / logging command line."""
        self.stdout.write(line + "\n")
        self.stdout.flush()
