"""A laptop: outputs and annotations are plain lines on stderr; the summary goes to a file if asked."""

from __future__ import annotations

import sys
from pathlib import Path

from .base import Platform


class LocalPlatform(Platform):
    name = "local"

    def __init__(self, environ) -> None:
        super().__init__(environ)
        # stdout is kept for machine-readable results; everything for people goes to stderr.
        self.stdout = sys.stderr

    def _write_output(self, name: str, value: str) -> None:
        path = self.environ.get("STACKCI_OUTPUT_FILE")
        if path:
            from .github import fresh_token
            delimiter = fresh_token("delimiter")
            with open(path, "a", encoding="utf-8", newline="\n") as fh:
                fh.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")

    def _annotate(self, level, message, *, file, line, col, title) -> None:
        where = ""
        if file:
            where = file + (f":{line}" if line else "") + ": "
        head = f"{title}: " if title else ""
        sys.stderr.write(f"{level}: {where}{head}{message}\n")
        sys.stderr.flush()

    def append_summary(self, markdown: str) -> None:
        path = self.environ.get("STACKCI_SUMMARY_FILE")
        if not path:
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8", newline="\n") as fh:
            text = self.redact(markdown)
            fh.write(text if text.endswith("\n") else text + "\n")
