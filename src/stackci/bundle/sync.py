"""Which files a deploy uploads: the bundle folder minus what git ignores, then
``sync.exclude`` taken out and ``sync.include`` added back.

Ignore rules follow gitignore(5): ``.gitignore`` files of the repository from
its top down to each folder (the deepest wins), ``.git/info/exclude``, ``!``
negation, a trailing ``/`` for folders only, a ``/`` elsewhere anchoring the
pattern to the file's folder, ``*`` and ``?`` not crossing ``/``, ``**`` for any
number of folders, and no way to re-include a file whose folder is excluded.
``sync.include`` / ``sync.exclude`` use the same syntax, relative to the bundle
root. ``.git``, ``.databricks`` (the Databricks CLI's local folder) and ``.stackci`` (stackci's
local reports) are never uploaded, at any depth.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .git import repository_root

#: never uploaded: git, the Databricks CLI's local folder, stackci's local reports (e.g. unit-tests.xml)
ALWAYS_SKIPPED = {".git", ".databricks", ".stackci"}


@dataclass
class Rule:
    regex: re.Pattern
    negate: bool
    dir_only: bool
    base: str        # POSIX folder (relative to the matching root) the rule is relative to; "" = top


def _translate(glob: str) -> str:
    """A gitignore glob (no leading/trailing '/') into a regex over a relative POSIX path."""
    out, i, n = "", 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            if glob[i:i + 2] == "**":
                before_ok = i == 0 or glob[i - 1] == "/"
                after = glob[i + 2:i + 3]
                if before_ok and after == "/":
                    out += "(?:.*/)?"
                    i += 3
                    continue
                if before_ok and i + 2 == n:
                    out += ".*"
                    i += 2
                    continue
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "\\" and i + 1 < n:
            i += 1
            out += re.escape(glob[i])
        elif c == "[":
            j = glob.find("]", i + 2 if glob[i + 1:i + 2] in ("!", "^", "]") else i + 1)
            if j == -1:
                out += re.escape(c)
            else:
                body = glob[i + 1:j]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out += "[" + body.replace("\\", "\\\\") + "]"
                i = j
        else:
            out += re.escape(c)
        i += 1
    return out


def parse_rule(line: str, base: str) -> Rule | None:
    line = line.rstrip("\n").rstrip("\r")
    if not line or line.startswith("#"):
        return None
    # trailing spaces are ignored unless escaped
    while line.endswith(" ") and not line.endswith("\\ "):
        line = line[:-1]
    if not line:
        return None
    negate = line.startswith("!")
    if negate:
        line = line[1:]
    elif line.startswith("\\!") or line.startswith("\\#"):
        line = line[1:]
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    line = line.lstrip("/")
    body = _translate(line)
    regex = re.compile(("^" if anchored else "^(?:.*/)?") + body + "$")
    return Rule(regex, negate, dir_only, base)


def parse_lines(lines, base: str = "") -> list[Rule]:
    return [r for r in (parse_rule(line, base) for line in lines) if r is not None]


def match(rules: list[Rule], rel: str, is_dir: bool) -> bool | None:
    """True (ignored), False (re-included) or None (no rule matched); the last match wins."""
    verdict = None
    for rule in rules:
        if rule.dir_only and not is_dir:
            continue
        if rule.base:
            if not rel.startswith(rule.base + "/"):
                continue
            sub = rel[len(rule.base) + 1:]
        else:
            sub = rel
        if rule.regex.match(sub):
            verdict = not rule.negate
    return verdict


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def list_files(root: Path, include: list[str] | tuple = (), exclude: list[str] | tuple = ()) -> list[str]:
    """Relative POSIX paths of the files to sync, sorted."""
    root = root.resolve()
    repo = repository_root(root)
    # rules from the repository top down to the bundle root, expressed relative to the repository
    repo_rules: list[Rule] = []
    prefix = ""
    if repo is not None:
        repo = repo.resolve()
        repo_rules += parse_lines(_read_lines(repo / ".git" / "info" / "exclude")) if (repo / ".git").is_dir() else []
        prefix = root.relative_to(repo).as_posix()
        prefix = "" if prefix == "." else prefix
        folder = repo
        parts = prefix.split("/") if prefix else []
        for i in range(len(parts)):
            rel_base = "/".join(parts[:i])
            repo_rules += parse_lines(_read_lines(folder / ".gitignore"), rel_base)
            folder = folder / parts[i]
    include_rules = parse_lines(include)
    exclude_rules = parse_lines(exclude)

    def repo_rel(rel: str) -> str:
        return f"{prefix}/{rel}" if prefix else rel

    def ignored_by_git(rel: str, is_dir: bool, rules: list[Rule]) -> bool:
        return bool(match(rules, repo_rel(rel), is_dir))

    kept: set[str] = set()
    everything: list[str] = []

    def walk(folder: Path, rel_folder: str, rules: list[Rule], git_excluded: bool) -> None:
        local = parse_lines(_read_lines(folder / ".gitignore"), "/".join(p for p in (prefix, rel_folder) if p))
        if local:
            rules = rules + local
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            rel = f"{rel_folder}/{entry.name}" if rel_folder else entry.name
            if entry.name in ALWAYS_SKIPPED:
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if is_dir:
                if entry.is_symlink():
                    continue
                excluded = git_excluded or ignored_by_git(rel, True, rules)
                if excluded and not include_rules:
                    continue  # nothing can bring files back from an ignored folder
                walk(Path(entry.path), rel, rules, excluded)
            elif entry.is_file():
                everything.append(rel)
                if not git_excluded and not ignored_by_git(rel, False, rules):
                    kept.add(rel)

    walk(root, "", repo_rules, False)

    def matches_any(rules: list[Rule], rel: str) -> bool:
        if not rules:
            return False
        # a pattern may name the file or any folder above it
        parts = rel.split("/")
        for i in range(1, len(parts)):
            if match(rules, "/".join(parts[:i]), True):
                return True
        return bool(match(rules, rel, False))

    out = set(kept)
    for rel in everything:
        if rel not in out and matches_any(include_rules, rel):
            out.add(rel)
    return sorted(rel for rel in out if not matches_any(exclude_rules, rel))
