"""``${...}`` references: the grammar the Databricks CLI accepts.

A reference is ``${`` a dotted path ``}`` whose segments are identifiers (letters
first; ``-`` and ``_`` only between letters or digits), each optionally
followed by ``[N]`` indexes: ``${var.cluster.spark_conf}``,
``${resources.jobs.train.tasks[0].task_key}``. Anything else (``{{job.id}}``,
``${env:X}``, a lone ``$``) is ordinary text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Written without nested quantifiers over the same characters, so a long near-miss cannot make the
# regex backtrack exponentially (the same language as letters-first, '-'/'_' only between alnum runs).
_SEGMENT = r"[a-zA-Z][a-zA-Z0-9]*(?:[-_]+[a-zA-Z0-9]+)*"
REFERENCE = re.compile(r"\$\{(" + _SEGMENT + r"(?:\." + _SEGMENT + r"(?:\[[0-9]+\])*)*(?:\[[0-9]+\])*)\}")
_PART = re.compile(r"([^.\[\]]+)|\[([0-9]+)\]")


@dataclass(frozen=True)
class Ref:
    text: str              # the whole "${...}"
    path: tuple            # ("var", "x") or ("resources", "jobs", "train", "tasks", 0, "task_key")
    start: int
    end: int

    @property
    def dotted(self) -> str:
        return self.text[2:-1]


def parse_path(dotted: str) -> tuple:
    parts: list = []
    for m in _PART.finditer(dotted):
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
    return tuple(parts)


def find(text: str) -> list[Ref]:
    return [Ref(m.group(0), parse_path(m.group(1)), m.start(), m.end()) for m in REFERENCE.finditer(text)]


def has_reference(text: str) -> bool:
    return isinstance(text, str) and REFERENCE.search(text) is not None


def pure(text: str) -> Ref | None:
    """The reference when ``text`` is exactly one reference and nothing else (it keeps the value's type)."""
    m = REFERENCE.fullmatch(text)
    return Ref(m.group(0), parse_path(m.group(1)), 0, len(text)) if m else None
