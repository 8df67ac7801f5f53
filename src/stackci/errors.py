"""The one exception tree of stackci.

Only ``stackci.__main__`` turns these into output and exit codes:
``ConfigError`` (bad input or configuration) exits 2, ``RunFailed`` (the work
itself failed: tests, runs, deploys) exits 1, ``Interrupted`` exits 130.
"""

from __future__ import annotations


class StackciError(Exception):
    """Root of every error stackci raises on purpose."""

    exit_code = 1
    #: a short title for the error annotation
    title = "stackci"

    def __init__(self, message: str, *, hint: str | None = None, file: str | None = None,
                 line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.file = file
        self.line = line

    def one_line(self) -> str:
        text = self.message if not self.hint else f"{self.message}; {self.hint}"
        return " ".join(text.split()) if "\n" in text else text


class ConfigError(StackciError):
    """Bad input or configuration: nothing was changed. Exit code 2."""

    exit_code = 2
    title = "stackci: bad input"


class RunFailed(StackciError):
    """The work ran and failed (tests failed, a run failed, a deploy failed). Exit code 1."""

    exit_code = 1
    title = "stackci: failed"


class Interrupted(StackciError):
    """SIGINT or SIGTERM arrived. Exit code 130."""

    exit_code = 130
    title = "stackci: interrupted"
