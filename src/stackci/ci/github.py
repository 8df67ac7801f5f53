"""GitHub Actions: workflow commands on stdout, environment files for outputs and summary.

Grammar followed (GitHub docs, "Workflow commands for GitHub Actions"):

* ``$GITHUB_OUTPUT`` takes ``name<<DELIMITER`` / value lines / ``DELIMITER``; a fresh
  random delimiter that does not occur in the value makes any value safe.
* ``::cmd key=value,key=value::data``; data escapes ``%`` ``\\r`` ``\\n``;
  property values also escape ``:`` and ``,``.
* ``::stop-commands::TOKEN`` ... ``::TOKEN::`` switches command processing off for
  the text in between; the token is random and fresh, so the text cannot guess it.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from pathlib import Path
from typing import Iterator

from .base import Platform


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


_V2_START = re.compile(r"^(\s*)::", re.MULTILINE)
ZWSP = "\u200b"


def neutralise(text: str) -> str:
    """Make each line inert without stop-commands: no line starts with ``::`` after
    leading whitespace (V2 commands), and no ``##[`` anywhere (V1 commands)."""
    text = _V2_START.sub(lambda m: m.group(1) + ":" + ZWSP + ":", text)
    return text.replace("##[", "#" + ZWSP + "#[")


def fresh_token(prefix: str = "stackci") -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


class GitHubPlatform(Platform):
    name = "github"

    def _env_file(self, var: str) -> Path | None:
        path = self.environ.get(var)
        return Path(path) if path else None

    def neutralise(self, text: str) -> str:
        return neutralise(text)

    def _write_output(self, name: str, value: str) -> None:
        delimiter = fresh_token("ghadelimiter")
        while delimiter in value:  # pragma: no cover - 128 random bits
            delimiter = fresh_token("ghadelimiter")
        block = f"{name}<<{delimiter}\n{value}\n{delimiter}\n"
        target = self._env_file("GITHUB_OUTPUT")
        if target is None:
            # No output file (an old runner or a bare shell): keep it visible but inert.
            self._emit(neutralise(f"output {name}: {value}"))
            return
        with open(target, "a", encoding="utf-8", newline="\n") as fh:
            fh.write(block)

    def _write_mask(self, secret: str) -> None:
        self.command(f"::add-mask::{escape_data(secret)}")
        for line in secret.splitlines():
            if line.strip() and line != secret:
                self.command(f"::add-mask::{escape_data(line)}")

    def _annotate(self, level, message, *, file, line, col, title) -> None:
        # The runner trims the property list, so surrounding whitespace cannot survive: drop it here.
        file, title = (file or "").strip(), (title or "").strip()
        props = []
        if file:
            props.append(f"file={escape_property(file)}")
        if line:
            props.append(f"line={int(line)}")
        if col:
            props.append(f"col={int(col)}")
        if title:
            props.append(f"title={escape_property(title)}")
        head = f"::{level}" + (" " + ",".join(props) if props else "")
        self.command(f"{head}::{escape_data(message)}")

    def start_group(self, title: str) -> None:
        self.command(f"::group::{escape_data(self.redact(title))}")

    def end_group(self) -> None:
        self.command("::endgroup::")

    def append_summary(self, markdown: str) -> None:
        target = self._env_file("GITHUB_STEP_SUMMARY")
        if target is None:
            return
        text = self.redact(markdown)
        with open(target, "a", encoding="utf-8", newline="\n") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")

    @contextlib.contextmanager
    def untrusted_block(self) -> Iterator:
        token = fresh_token()
        self.command(f"::stop-commands::{token}")

        def write(text: str) -> None:
            # The token is fresh: outside text cannot contain it except by chance of 2**-128.
            self._emit(self.redact(text).replace(f"::{token}::", f":: {token}::"))

        try:
            yield write
        finally:
            self.command(f"::{token}::")
