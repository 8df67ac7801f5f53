"""Release notes from the commits since the previous release.

When the messages follow Conventional Commits (``type(scope)!: description``, a
``BREAKING CHANGE:`` footer), the notes are grouped by type with breaking changes
first; otherwise they are a plain list. Commit text is outside text: it is put on
one line with HTML and mentions neutralised, so a message cannot ping people or
inject markup into a release page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..markdown import cell

_CONVENTIONAL = re.compile(r"^(?P<type>[a-zA-Z]+)(?:\((?P<scope>[^()\r\n]*)\))?(?P<bang>!)?: (?P<desc>\S.*)$")
_BREAKING = re.compile(r"^BREAKING[ -]CHANGE: *(?P<text>.+)$", re.MULTILINE)

#: section titles in the order they appear; unknown types go under "Other changes"
SECTIONS = [
    ("feat", "Features"),
    ("fix", "Bug fixes"),
    ("perf", "Performance"),
    ("refactor", "Refactoring"),
    ("docs", "Documentation"),
    ("test", "Tests"),
    ("build", "Build"),
    ("ci", "CI"),
    ("style", "Style"),
    ("chore", "Chores"),
    ("revert", "Reverts"),
]
BREAKING = "⚠ Breaking changes"
OTHER = "Other changes"


@dataclass(frozen=True)
class Entry:
    sha: str
    type: str | None
    scope: str | None
    description: str
    breaking: str | None     # text of the breaking change, if any

    def line(self) -> str:
        scope = f"**{cell(self.scope)}:** " if self.scope else ""
        return f"- {scope}{cell(self.description)} ({self.sha[:7]})"


def parse(sha: str, subject: str, body: str = "") -> Entry:
    match = _CONVENTIONAL.match(subject.strip())
    footer = _BREAKING.search(body or "")
    if not match:
        return Entry(sha, None, None, subject.strip(), footer["text"].strip() if footer else None)
    breaking = footer["text"].strip() if footer else (match["desc"].strip() if match["bang"] else None)
    return Entry(sha, match["type"].lower(), (match["scope"] or "").strip() or None, match["desc"].strip(), breaking)


def render(commits: list[tuple[str, str, str]], *, previous: str | None, compare_url: str | None = None) -> str:
    """Markdown notes for ``commits`` (``(sha, subject, body)``, newest first)."""
    entries = [parse(*c) for c in commits]
    since = f"Changes since {cell(previous)}" if previous else "First release"
    lines = [since + (f" ([compare]({compare_url}))" if compare_url else "") + ":", ""]
    if not entries:
        lines.append("- No changes since the previous release.")
        return "\n".join(lines) + "\n"
    if not any(e.type for e in entries):
        lines += [e.line() for e in entries]
        return "\n".join(lines) + "\n"
    breaking = [e for e in entries if e.breaking]
    if breaking:
        lines += [f"### {BREAKING}", ""]
        for e in breaking:
            scope = f"**{cell(e.scope)}:** " if e.scope else ""
            lines.append(f"- {scope}{cell(e.breaking)} ({e.sha[:7]})")
        lines.append("")
    known = dict(SECTIONS)
    for key, title in SECTIONS:
        group = [e for e in entries if e.type == key]
        if group:
            lines += [f"### {title}", "", *(e.line() for e in group), ""]
    rest = [e for e in entries if e.type not in known]
    if rest:
        lines += [f"### {OTHER}", "", *(e.line() for e in rest), ""]
    return "\n".join(lines).rstrip() + "\n"
