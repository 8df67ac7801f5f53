"""Git facts for ``${bundle.git.*}``, read from the ``.git`` folder (no subprocess, no network)."""

from __future__ import annotations

import configparser
from pathlib import Path


def repository_root(start: Path) -> Path | None:
    """The work tree that holds ``start`` (the folder with ``.git``), or None."""
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None


def _git_dir(worktree: Path) -> Path | None:
    dot_git = worktree / ".git"
    if dot_git.is_dir():
        return dot_git
    try:
        text = dot_git.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if text.startswith("gitdir:"):
        path = Path(text[len("gitdir:"):].strip())
        return path if path.is_absolute() else (worktree / path).resolve()
    return None


def _common_dir(git_dir: Path) -> Path:
    try:
        text = (git_dir / "commondir").read_text(encoding="utf-8").strip()
    except OSError:
        return git_dir
    path = Path(text)
    return path if path.is_absolute() else (git_dir / path).resolve()


def _read_ref(git_dir: Path, common: Path, ref: str) -> str | None:
    for base in (git_dir, common):
        try:
            return (base / ref).read_text(encoding="utf-8").strip()
        except OSError:
            continue
    try:
        for line in (common / "packed-refs").read_text(encoding="utf-8").splitlines():
            if line and not line.startswith(("#", "^")):
                sha, _, name = line.partition(" ")
                if name.strip() == ref:
                    return sha
    except OSError:
        pass
    return None


def info(bundle_root: Path) -> dict:
    """``branch``, ``commit``, ``origin_url``, ``bundle_root_path`` when known (missing keys otherwise)."""
    worktree = repository_root(bundle_root)
    if worktree is None:
        return {}
    git_dir = _git_dir(worktree)
    if git_dir is None:
        return {}
    common = _common_dir(git_dir)
    out: dict = {}
    try:
        rel = bundle_root.resolve().relative_to(worktree.resolve()).as_posix()
        out["bundle_root_path"] = rel or "."
    except ValueError:
        pass
    try:
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    except OSError:
        return out
    if head.startswith("ref:"):
        ref = head[4:].strip()
        if ref.startswith("refs/heads/"):
            out["branch"] = ref[len("refs/heads/"):]
        commit = _read_ref(git_dir, common, ref)
        if commit:
            out["commit"] = commit
    elif head:
        out["commit"] = head
    parser = configparser.RawConfigParser(strict=False)
    try:
        parser.read(common / "config", encoding="utf-8")
        url = parser.get('remote "origin"', "url", fallback=None)
        if url:
            out["origin_url"] = url
    except (configparser.Error, OSError):
        pass
    return out


def may_have_tags(start: Path) -> bool:
    """Whether the repository holding ``start`` may have a tag (False only when it surely has none:
    outside a checkout, or no tag ref loose or packed). Lets a deploy skip ``git tag --points-at``
    in the common case of a checkout without tags (CI clones fetch none by default)."""
    worktree = repository_root(start)
    git_dir = _git_dir(worktree) if worktree is not None else None
    if git_dir is None:
        return False
    common = _common_dir(git_dir)
    if (common / "reftable").exists():
        return True                                  # refs in a reftable: only git reads them
    tags = common / "refs" / "tags"
    try:
        if any(path.is_file() for path in tags.rglob("*")):
            return True
    except OSError:
        return True
    try:
        packed = (common / "packed-refs").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return " refs/tags/" in packed
