"""Azure DevOps: ``##vso[...]`` logging commands on stdout.

The agent acts on ``##vso[`` anywhere in a line (case-insensitively) and on
``##[`` formatting commands, so outside text is neutralised line by line.
Property values escape ``%``→``%AZP25``, CR→``%0D``, LF→``%0A``, ``;``→``%3B``,
``]``→``%5D``; message data escapes ``%``, CR and LF.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

from .base import Platform

_COMMANDLIKE = re.compile(r"##(?=(?:vso)?\[)", re.IGNORECASE)
ZWSP = "\u200b"


def escape_data(text: str) -> str:
    return text.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(";", "%3B").replace("]", "%5D")


def neutralise(text: str) -> str:
    """Break every ``##vso[`` and ``##[`` so the agent sees no command in ``text``."""
    return _COMMANDLIKE.sub("#" + ZWSP + "#", text)


class AzurePlatform(Platform):
    name = "azure"

    def __init__(self, environ) -> None:
        super().__init__(environ)
        self._summary: Path | None = None

    def neutralise(self, text: str) -> str:
        return neutralise(text)

    @staticmethod
    def variable_name(name: str) -> str:
        """Azure variable names allow letters, digits, ``.`` and ``_``: ``junit-xml`` becomes ``junit_xml``."""
        return name.replace("-", "_")

    def _write_output(self, name: str, value: str) -> None:
        self.command(f"##vso[task.setvariable variable={escape_property(self.variable_name(name))};isOutput=true]"
                     f"{escape_data(value)}")

    def _write_mask(self, secret: str) -> None:
        self.command(f"##vso[task.setsecret]{escape_data(secret)}")
        for line in secret.splitlines():
            if line.strip() and line != secret:
                self.command(f"##vso[task.setsecret]{escape_data(line)}")

    def _annotate(self, level, message, *, file, line, col, title) -> None:
        kind = "warning" if level == "notice" else level
        props = [f"type={kind}"]
        if file:
            props.append(f"sourcepath={escape_property(file)}")
        if line:
            props.append(f"linenumber={int(line)}")
        if col:
            props.append(f"columnnumber={int(col)}")
        text = f"{title}: {message}" if title else message
        self.command(f"##vso[task.logissue {';'.join(props)}]{escape_data(neutralise(text))}")

    def start_group(self, title: str) -> None:
        self.command("##[group]" + neutralise(self.redact(title)).replace("\r", " ").replace("\n", " "))

    def end_group(self) -> None:
        self.command("##[endgroup]")

    def append_summary(self, markdown: str) -> None:
        if self._summary is None:
            base = self.environ.get("AGENT_TEMPDIRECTORY") or tempfile.gettempdir()
            Path(base).mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix="stackci-summary-", suffix=".md", dir=base)
            os.close(fd)
            self._summary = Path(name)
        text = self.redact(markdown)
        with open(self._summary, "a", encoding="utf-8", newline="\n") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")

    def flush(self) -> None:
        if self._summary is not None:
            self.command(f"##vso[task.uploadsummary]{escape_data(str(self._summary))}")
            self._summary = None

    @contextlib.contextmanager
    def untrusted_block(self) -> Iterator:
        def write(text: str) -> None:
            self._emit(neutralise(self.redact(text)))
        yield write
