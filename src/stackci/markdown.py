"""Markdown for step summaries and PR comments, with outside text made harmless.

Outside text (test names, messages, traces) must not turn into HTML, links,
mentions or table breaks: inline text is HTML-escaped inside ``<code>``, blocks go
in a fence longer than any backtick run they contain.
"""

from __future__ import annotations

import html
import re


def cell(text: object) -> str:
    """Plain text safe inside a table cell (one line, no pipes, no HTML)."""
    value = " ".join(str(text).split())
    return html.escape(value, quote=False).replace("|", "&#124;").replace("@", "&#64;")


def code(text: object) -> str:
    """Inline code that is safe anywhere, including table cells."""
    return f"<code>{cell(text)}</code>"


def fence(text: str, lang: str = "text", limit: int = 6000) -> str:
    body = text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit} more characters)"
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{body.rstrip()}\n{ticks}"


def table(headers: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    align = align or ["---"] * len(headers)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def details(summary_html: str, body: str) -> str:
    return f"<details><summary>{summary_html}</summary>\n\n{body}\n\n</details>"


def seconds(value: float) -> str:
    if value < 60:
        return f"{value:.2f} s"
    minutes, secs = divmod(value, 60)
    return f"{int(minutes)} min {secs:.0f} s"
