"""Incremental file sync to ``${workspace.file_path}``.

Which files changed is decided by content hash against the state (no listing of
the workspace, so a deploy that changes nothing costs the same for 10 files or
10,000). Uploads run in a bounded thread pool through ``workspace/import`` as
base64 JSON, which databricks-sdk retries on 429/503 and dropped connections
(its multipart ``upload`` is not retried). Source notebooks are imported as
notebooks (``SOURCE`` with their language, ``.ipynb`` as ``JUPYTER``) at their path
without the extension; every other file as a workspace file (``RAW``).
"""

from __future__ import annotations

import posixpath
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass

from ..dbx import first_line, request_pool
from ..errors import RunFailed, StackciError
from .state import delete_path, import_file

LANGUAGES = {".py": "PYTHON", ".sql": "SQL", ".scala": "SCALA", ".r": "R"}


@dataclass
class FileChange:
    rel: str
    action: str                   # "upload" | "delete" | "unchanged"
    remote: str
    reason: str = ""
    sha256: str | None = None
    notebook: bool = False
    old_remote: str | None = None  # a file that moved (e.g. became a notebook): delete the old object first
    local: object = None           # the SyncFile


def plan_files(bundle, state_files: dict) -> list[FileChange]:
    changes: list[FileChange] = []
    desired = bundle.sync_files
    for rel, sf in desired.items():
        remote = sf.remote_path(bundle.file_path)
        entry = state_files.get(rel)
        if entry and entry.get("sha256") == sf.sha256 and entry.get("remote") == remote:
            changes.append(FileChange(rel, "unchanged", remote, sha256=sf.sha256, notebook=sf.notebook, local=sf))
            continue
        reason = "new" if not entry else ("changed" if entry.get("remote") == remote else "moved")
        old = entry.get("remote") if entry and entry.get("remote") != remote else None
        changes.append(FileChange(rel, "upload", remote, reason, sf.sha256, sf.notebook, old, sf))
    for rel, entry in sorted(state_files.items()):
        if rel not in desired:
            changes.append(FileChange(rel, "delete", entry.get("remote") or "", "removed from the bundle"))
    return changes


def needed_dirs(uploads: list[FileChange], existing: set[str]) -> list[str]:
    """The folders to create (``mkdirs`` makes parents too, so only the deepest of each chain)."""
    wanted = {posixpath.dirname(c.remote) for c in uploads} - existing
    deepest = [d for d in wanted if not any(o != d and o.startswith(d + "/") for o in wanted)]
    return sorted(deepest)


class Syncer:
    """Applies the file part of a plan. ``done`` collects what was applied, also when a step fails,
    so the caller can record it in the state."""

    def __init__(self, client, parallel: int = 8, progress=None) -> None:
        self.client = client
        self.parallel = max(1, parallel)
        self.progress = progress
        self.uploaded: list[FileChange] = []
        self.deleted: list[FileChange] = []
        self._lock = threading.Lock()
        self._last_report = 0.0

    def _upload(self, change: FileChange) -> None:
        content = change.local.path.read_bytes()
        if change.notebook:
            if change.rel.lower().endswith(".ipynb"):
                import_file(self.client, change.remote, content, overwrite=True, fmt="JUPYTER")
            else:
                language = LANGUAGES[posixpath.splitext(change.rel)[1].lower()]
                import_file(self.client, change.remote, content, overwrite=True, fmt="SOURCE", language=language)
        else:
            import_file(self.client, change.remote, content, overwrite=True, fmt="RAW")
        with self._lock:
            self.uploaded.append(change)
        self._report()

    def _report(self, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_report < 2.0:
                return
            self._last_report = now
            count = len(self.uploaded)
        self.progress.say(f"uploaded {count}/{self._total} files")

    def _run(self, pool: ThreadPoolExecutor, fn, items, what: str) -> None:
        futures = {pool.submit(fn, item): item for item in items}
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                for other in futures:
                    other.cancel()
                exc = future.exception()
                item = futures[future]
                if isinstance(exc, StackciError):      # already says what went wrong (auth, a failed write)
                    raise exc
                name = getattr(item, "rel", item)
                code = getattr(exc, "error_code", None) or type(exc).__name__
                raise RunFailed(f"{what} {name} failed: {code}: {first_line(exc)}",
                                hint="deploy again: files already uploaded are recorded and not sent twice") from exc
        wait(futures)

    def _delete(self, change: FileChange) -> None:
        if change.remote:
            delete_path(self.client, change.remote)
        with self._lock:
            self.deleted.append(change)

    def apply(self, changes: list[FileChange], existing_dirs: set[str]) -> None:
        uploads = [c for c in changes if c.action == "upload"]
        deletes = [c for c in changes if c.action == "delete"]
        targets = {c.remote for c in uploads}
        moved = [FileChange(c.rel, "delete", c.old_remote, "moved") for c in uploads
                 if c.old_remote and c.old_remote not in targets]
        self._total = len(uploads)
        pool = request_pool(self.parallel, "stackci-sync", max(len(uploads), len(deletes) + len(moved)))
        try:
            if deletes or moved:
                self._run(pool, self._delete, deletes + moved, "deleting")
            if uploads:
                dirs = needed_dirs(uploads, existing_dirs)
                self._run(pool, self.client.workspace.mkdirs, dirs, "creating folder")
                self._run(pool, self._upload, uploads, "uploading")
                self._report(force=True)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def delete_all(self, changes: list[FileChange]) -> None:
        """Destroy: delete these files, then every folder that became empty (deepest first)."""
        pool = request_pool(self.parallel, "stackci-sync", len(changes))
        try:
            self._run(pool, self._delete, changes, "deleting")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
