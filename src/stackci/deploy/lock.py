"""The deployment lock: ``${workspace.state_path}/deploy.lock``.

Taken by creating the file with ``overwrite=false`` (the workspace refuses to
create it twice) and then reading it back: only the deploy whose holder id is in
the file owns the lock. Reading back also settles the case where the SDK retried
an import whose first attempt had in fact succeeded (the retry is refused as
"already exists", and the file holds our own id). Released by deleting the file,
after checking that it is still ours.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass

from .. import log
from ..errors import ConfigError, RunFailed
from .state import LOCK_FILE, delete_path, import_file

logger = log.get("deploy")


class LockHeld(ConfigError):
    """Another deploy holds the lock: nothing was changed."""

    title = "stackci: deployment locked"


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def describe(holder: dict, now: float | None = None) -> str:
    """``alice@example.com (deploy on runner-1, since 3 min ago, https://…/runs/1)``."""
    now = time.time() if now is None else now
    who = holder.get("user") or "an unknown user"
    parts = []
    if holder.get("command"):
        parts.append(holder["command"] + (f" on {holder['machine']}" if holder.get("machine") else ""))
    if isinstance(holder.get("acquired_epoch"), (int, float)):
        parts.append(f"since {ago(now - holder['acquired_epoch'])}")
    elif holder.get("acquired_at"):
        parts.append(f"since {holder['acquired_at']}")
    if holder.get("run_url"):
        parts.append(holder["run_url"])
    return who + (f" ({', '.join(parts)})" if parts else "")


@dataclass
class DeployLock:
    client: object
    state_path: str
    user: str
    command: str
    run_url: str | None = None
    target: str = ""

    def __post_init__(self) -> None:
        self.path = f"{self.state_path.rstrip('/')}/{LOCK_FILE}"
        self.id = uuid.uuid4().hex
        self.held = False
        self.early = None

    def _document(self) -> dict:
        now = time.time()
        return {"id": self.id, "user": self.user, "command": self.command, "machine": socket.gethostname(),
                "pid": os.getpid(), "acquired_epoch": round(now, 3),
                "acquired_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "run_url": self.run_url}

    def read(self) -> dict | None:
        """The current holder, or None when nobody holds the lock."""
        from databricks.sdk import errors
        from databricks.sdk.service.workspace import ExportFormat

        try:
            exported = self.client.workspace.export(self.path, format=ExportFormat.AUTO)
        except (errors.NotFound, errors.ResourceDoesNotExist):
            return None
        try:
            doc = json.loads(base64.b64decode(exported.content or "").decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            doc = None
        return doc if isinstance(doc, dict) else {"user": "unreadable lock file"}

    def acquire(self, force: bool = False, alongside=None) -> dict | None:
        """Take the lock; returns the previous holder when ``force`` took it from someone.

        ``alongside()`` (reading the state, say) runs while the lock file is read back, once the
        lock file was written: it saves a round trip and changes nothing about the protocol, as
        its result is only used when the read-back shows the lock is ours (else it is dropped).
        Its result or exception is in :attr:`early` as ``(value, error)``.
        """
        from ..signals import signals_held

        # a SIGINT/SIGTERM between writing the lock file and confirming it would leave a lock
        # nobody holds: the signal waits until the outcome is known, then the lock is removed
        with signals_held("the deployment lock is being taken") as received:
            previous = self._acquire(force, alongside)
        if received:
            self._remove_if_ours()
            raise KeyboardInterrupt
        return previous

    def _remove_if_ours(self) -> None:
        from databricks.sdk.errors import DatabricksError

        try:
            holder = self.read()
            if holder is not None and holder.get("id") == self.id:
                delete_path(self.client, self.path)
        except (DatabricksError, OSError) as exc:
            logger.warning("could not remove the deployment lock %s after the interrupt: %s; "
                           "the next deploy needs --force-lock", self.path, exc)
        self.held = False

    def _acquire(self, force: bool, alongside) -> dict | None:
        from databricks.sdk import errors

        content = json.dumps(self._document(), sort_keys=True).encode("utf-8")
        previous = None
        try:
            import_file(self.client, self.path, content, overwrite=False)
        except (errors.ResourceAlreadyExists, errors.AlreadyExists, errors.ResourceConflict):
            holder = self.read()
            if holder is not None and holder.get("id") == self.id:
                self.held = True          # our own first attempt went through before a retry
                return None
            if not force:
                raise LockHeld(f"the deployment lock of target {self.target!r} is held by "
                               f"{describe(holder or {})}; another deploy or destroy is running or died holding it",
                               hint=f"wait for it to finish, or pass --force-lock if it is dead ({self.path})") \
                    from None
            previous = holder
            import_file(self.client, self.path, content, overwrite=True)
        holder = self._read_back(alongside)
        if holder is None or holder.get("id") != self.id:
            self.early = None
            raise LockHeld(f"the deployment lock of target {self.target!r} was taken by "
                           f"{describe(holder or {})} at the same moment",
                           hint="run again once that deploy has finished")
        self.held = True
        return previous

    def _read_back(self, alongside) -> dict | None:
        self.early = None
        if alongside is None:
            return self.read()
        import threading

        box: list = []

        def run() -> None:
            try:
                box.append((alongside(), None))
            except BaseException as exc:  # handed to whoever uses the result, inside the lock's try
                box.append((None, exc))

        worker = threading.Thread(target=run, name="stackci-lock-alongside", daemon=True)
        worker.start()
        try:
            return self.read()
        finally:
            worker.join()
            self.early = box[0] if box else None

    def release(self, alongside=None) -> None:
        """Delete the lock file if it is still ours (someone may have forced it away).

        ``alongside()`` (the deploy's last state write) runs while the lock file is read back, and
        is finished before the lock file is deleted; its result or exception is in :attr:`early`."""
        if not self.held:
            self.early = None
            if alongside is not None:
                try:
                    self.early = (alongside(), None)
                except Exception as exc:
                    self.early = (None, exc)
            return
        self.held = False
        holder = self._read_back(alongside)
        if holder is not None and holder.get("id") == self.id:
            delete_path(self.client, self.path)
        elif holder is not None:
            raise RunFailed(f"the deployment lock was taken over by {describe(holder)} during this deploy",
                            hint="check what that deploy changed; run again to converge")
