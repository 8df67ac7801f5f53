"""Semantic versions (semver.org 2.0.0): parse, order, bump, and tag names.

Precedence follows the spec: major.minor.patch numerically; a prerelease sorts
before its release; prerelease identifiers compare left to right, numeric ones
numerically and below alphanumeric ones, and a longer list wins when all shared
identifiers are equal (1.0.0-rc.1 < 1.0.0-rc.2 < 1.0.0-rc.10 < 1.0.0). Build
metadata (``+...``) is kept but never affects order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering
from typing import Iterable

from ..errors import ConfigError

_NUM = r"0|[1-9]\d*"
_IDENT = r"(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
SEMVER = (rf"(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
          rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?")
_SEMVER = re.compile(rf"^{SEMVER}$")
_PRE_NAME = re.compile(r"^[A-Za-z][0-9A-Za-z-]*$")
BUMPS = ("major", "minor", "patch")
FIRST = "0.1.0"


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[str | int, ...] = ()
    build: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str) -> "Version":
        match = _SEMVER.match(text.strip())
        if not match:
            raise ConfigError(f"{text!r} is not a semantic version",
                              hint="write MAJOR.MINOR.PATCH, optionally with -PRERELEASE, e.g. 1.4.0 or 2.0.0-rc.1")
        pre = tuple(int(p) if p.isdigit() else p for p in (match["pre"] or "").split(".") if p)
        return cls(int(match["major"]), int(match["minor"]), int(match["patch"]), pre, match["build"] or "")

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            text += "-" + ".".join(str(p) for p in self.pre)
        return text + (f"+{self.build}" if self.build else "")

    @property
    def is_prerelease(self) -> bool:
        return bool(self.pre)

    @property
    def core(self) -> "Version":
        return Version(self.major, self.minor, self.patch)

    def _key(self):
        # A release (no prerelease) sorts after every prerelease of the same core.
        pre = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.pre)
        return (self.major, self.minor, self.patch, not self.pre, pre)

    def __eq__(self, other) -> bool:
        return isinstance(other, Version) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: "Version") -> bool:
        return self._key() < other._key()

    def bump(self, part: str) -> "Version":
        """The next release of ``part`` (``major``, ``minor``, ``patch``) after this version's core."""
        if part == "major":
            return Version(self.major + 1, 0, 0)
        if part == "minor":
            return Version(self.major, self.minor + 1, 0)
        if part == "patch":
            return Version(self.major, self.minor, self.patch + 1)
        raise ConfigError(f"unknown bump {part!r}", hint="use major, minor or patch")

    def with_pre(self, name: str, number: int) -> "Version":
        return Version(self.major, self.minor, self.patch, (name, number))


def check_prerelease_name(name: str) -> str:
    if not _PRE_NAME.match(name or ""):
        raise ConfigError(f"--prerelease {name!r} is not a prerelease name",
                          hint="use letters, digits and '-', starting with a letter: rc, beta, alpha")
    return name


def next_version(existing: Iterable[Version], *, bump: str | None = None, version: Version | None = None,
                 prerelease: str | None = None) -> Version:
    """The version to release, given the versions already tagged.

    * ``version`` given: that version; with ``prerelease``, its next ``-<name>.N``.
    * ``bump`` given: the bump of the latest *release* (0.0.0 before the first one); the first
      release of all is 0.1.0. With ``prerelease``, the next ``-<name>.N`` of that core, so
      repeated rc cuts go rc.1, rc.2, ... and a plain bump then promotes to the release.
    """
    versions = sorted(set(existing))
    if version is not None:
        target = version
    elif bump is not None:
        releases = [v for v in versions if not v.is_prerelease]
        if not versions:
            target = Version.parse(FIRST)
        else:
            target = (releases[-1] if releases else Version(0, 0, 0)).bump(bump)
    else:
        raise ConfigError("give --bump major|minor|patch or --version X.Y.Z")
    if prerelease:
        if target.is_prerelease:
            raise ConfigError(f"--version {target} already has a prerelease part; drop --prerelease")
        numbers = [v.pre[1] for v in versions if v.core == target and len(v.pre) == 2
                   and v.pre[0] == prerelease and isinstance(v.pre[1], int)]
        target = target.with_pre(prerelease, max(numbers, default=0) + 1)
    return target


class TagPattern:
    """``v{version}`` ⇄ versions: formats tag names and recognises them among all tags."""

    def __init__(self, pattern: str, option: str = "--tag-pattern") -> None:
        if pattern.count("{version}") != 1:
            raise ConfigError(f"{option} {pattern!r} must contain {{version}} exactly once",
                              hint="e.g. 'v{version}' or 'release/v{version}'")
        head, tail = pattern.split("{version}")
        if any(c in head + tail for c in "{}") or any(c in pattern for c in " ~^:?*[\\") or ".." in pattern:
            raise ConfigError(f"{option} {pattern!r} would not make a valid git ref name",
                              hint="use letters, digits, '/', '-', '_' and '.' around {version}")
        self.pattern = pattern
        self._regex = re.compile("^" + re.escape(head) + f"(?P<v>{SEMVER})" + re.escape(tail) + "$")

    def format(self, version: Version) -> str:
        return self.pattern.replace("{version}", str(version))

    def match(self, name: str) -> Version | None:
        found = self._regex.match(name)
        return Version.parse(found["v"]) if found else None
