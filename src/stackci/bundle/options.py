"""Option types shared by the commands that take bundle input (``--var`` and friends)."""

from __future__ import annotations

import click


class Line(click.ParamType):
    """A string option whose environment variable holds one value per line (values may have spaces).

    click splits the environment variable of a ``multiple=True`` option on whitespace by
    default, which breaks ``STACKCI_VAR="comment=two words"``; the GitHub actions and Azure
    templates pass such inputs one per line. Blank lines are dropped, each value is stripped.
    """

    name = "key=value"

    def split_envvar_value(self, rv: str):
        return [line for line in (part.strip() for part in (rv or "").splitlines()) if line]

    def convert(self, value, param, ctx):
        return value.strip() if isinstance(value, str) else value
