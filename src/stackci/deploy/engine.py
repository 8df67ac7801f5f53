"""Deploy and destroy: lock → state → plan → files → resources → state → unlock.

Every applied change is followed by a state write, and every create is announced
in the state (``pending``) before it is sent, so a deploy that is killed at any
point converges when it runs again: files are compared by hash, resources already
recorded are compared by hash, and an object that was created but not recorded is
found by its deployment key and adopted instead of created a second time.
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass, field

from .. import log
from ..errors import RunFailed, StackciError
from . import acl
from .files import FileChange, Syncer
from .lock import DeployLock
from .plan import Plan, ResourceChange, make_plan
from .resources import DELETE_ORDER, Gone, Resolver, body_hash, handlers, resolve, singular
from .state import State, StateStore, check_owner

logger = log.get("deploy")


class DeployRejected(StackciError):
    """A precondition of the deploy does not hold (active runs): nothing was changed. Exit code 1."""

    exit_code = 1
    title = "stackci: deploy rejected"


@dataclass
class Outcome:
    created: list = field(default_factory=list)
    changed: list = field(default_factory=list)
    replaced: list = field(default_factory=list)
    deleted: list = field(default_factory=list)
    unchanged: list = field(default_factory=list)
    uploaded: int = 0
    files_deleted: int = 0
    files_unchanged: int = 0
    jobs: dict = field(default_factory=dict)       # key -> {id, url, name}
    rows: list = field(default_factory=list)       # (address, name, action, link) for the summary

    def line(self) -> str:
        replaced = f"{len(self.replaced)} replaced, " if self.replaced else ""
        return (f"{len(self.created)} created, {len(self.changed)} changed, {replaced}{len(self.deleted)} deleted, "
                f"{len(self.unchanged)} unchanged")

    def files_line(self) -> str:
        return f"files: {self.uploaded} uploaded, {self.files_deleted} deleted, {self.files_unchanged} unchanged"


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Engine:
    def __init__(self, client, bundle, *, host: str, record: dict, parallel: int = 8, progress=None,
                 warn=None) -> None:
        self.client = client
        self.warn = warn     # warn(message, file, line): a warning for the user (an annotation in CI)
        self.bundle = bundle
        self.host = host.rstrip("/")
        self.record = record
        self.parallel = parallel
        self.progress = progress
        self.kinds = handlers(client, record, bundle)
        self.store = StateStore(client, bundle.state_path)
        self._early_state = None     # (state, error) read while the lock was taken
        self.defer_last_write = False  # set by run_locked: the last state write overlaps the lock release
        self._last_write = None
        self.allow_replace = False     # a registered model may be deleted and created in another catalog/schema

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress.say(message)

    def url(self, kind: str, object_id) -> str | None:
        if kind == "jobs" and object_id is not None:
            return f"{self.host}/jobs/{object_id}"
        if kind == "experiments" and object_id is not None:
            return f"{self.host}/ml/experiments/{object_id}"
        if kind == "models" and object_id:
            import urllib.parse
            return f"{self.host}/ml/models/{urllib.parse.quote(str(object_id))}"
        if kind == "registered_models" and object_id:
            return f"{self.host}/explore/data/models/{str(object_id).replace('.', '/')}"
        return None

    # ------------------------------------------------------------------ reading
    def read_state(self) -> State:
        early, self._early_state = self._early_state, None
        if early is not None:        # read while the lock was read back (run_locked)
            value, error = early
            if error is not None:
                raise error
            return value
        return self._read_state_now()

    def _read_state_now(self) -> State:
        state = self.store.read()
        check_owner(state, self.bundle.name, self.bundle.target, self.store.path)
        return state

    def plan(self, state: State) -> Plan:
        plan = make_plan(self.bundle, state, self.client, self.kinds, self.host, self.parallel)
        for message, file, line in plan.notes:
            if self.warn is not None:
                self.warn(message, file, line)
            else:
                logger.warning("%s", message)
        return plan

    def lock(self, command: str) -> DeployLock | None:
        if not self.bundle.lock_enabled:
            return None
        return DeployLock(self.client, self.bundle.state_path, user=self.record.get("actor") or "unknown",
                          command=command, run_url=self.record.get("run_url"), target=self.bundle.target)

    # ------------------------------------------------------------------ deploy
    def check_active_runs(self, plan: Plan) -> None:
        jobs = self.kinds["jobs"]
        busy = []
        for change in plan.resources:
            if change.kind == "jobs" and change.action in ("update", "delete") and change.id is not None:
                if jobs.active_runs(change.id):
                    busy.append(f"{change.address} ({change.id})")
        if busy:
            raise DeployRejected(f"refusing to deploy: {len(busy)} job(s) to change have active runs: "
                                 + ", ".join(busy), hint="wait for the runs to finish or cancel them, or deploy "
                                                         "without --fail-on-active-runs")

    def begin(self, state: State, plan: Plan, status: str) -> None:
        state.bundle = {"name": self.bundle.name, "target": self.bundle.target, "root_path": self.bundle.root_path,
                        "host": self.host}
        state.deployment = dict(self.record, status=status)
        for change in plan.resources:
            if change.action == "create" and change.address not in state.pending:
                state.pending[change.address] = {"name": change.name, "dkey": change.desired.dkey, "since": now_iso()}

    def deploy(self, state: State, plan: Plan) -> Outcome:
        outcome = Outcome()
        self.begin(state, plan, "in progress")
        if plan.has_changes:
            self.store.write(state)   # the intent of every create is recorded before any is sent
        self.sync_files(state, plan, outcome)
        self.apply_folder_acl(state, plan)
        self.apply_resources(state, plan, outcome)
        state.deployment = dict(self.record, status="complete")
        state.last_complete = dict(self.record)
        if self.defer_last_write:
            self._last_write = state   # run_locked writes it while it reads the lock back
        else:
            self.store.write(state)
        return outcome

    def sync_files(self, state: State, plan: Plan, outcome: Outcome) -> None:
        changes = plan.files
        outcome.files_unchanged = sum(1 for c in changes if c.action == "unchanged")
        todo = [c for c in changes if c.action != "unchanged"]
        if plan.files_root_missing:
            state.files = {}
        if not todo:
            return
        self.say(f"syncing files to {self.bundle.file_path}: {sum(c.action == 'upload' for c in todo)} to upload, "
                 f"{sum(c.action == 'delete' for c in todo)} to delete")
        existing = {posixpath.dirname(e.get("remote", "")) for rel, e in state.files.items()
                    if e.get("remote")} if not plan.files_root_missing else set()
        syncer = Syncer(self.client, self.parallel, self.progress)
        try:
            syncer.apply(changes, existing)
        finally:
            uploaded_rels = {c.rel for c in syncer.uploaded}
            for c in syncer.deleted:
                if c.rel not in uploaded_rels and c.reason != "moved":
                    state.files.pop(c.rel, None)
            for c in syncer.uploaded:
                state.files[c.rel] = {"sha256": c.sha256, "remote": c.remote, "notebook": c.notebook}
            outcome.uploaded = len(syncer.uploaded)
            outcome.files_deleted = sum(1 for c in syncer.deleted if c.reason != "moved")
            if syncer.uploaded or syncer.deleted:
                self.store.write(state)

    def apply_folder_acl(self, state: State, plan: Plan) -> None:
        """The top-level permissions on the bundle's workspace folders (``PUT .../directories/<id>``),
        when they changed since the last deploy that set them."""
        if plan.folder_acl is None:
            return
        from databricks.sdk import errors

        paths, wanted, digest = plan.folder_acl
        for path in paths:
            try:
                object_id = self.client.workspace.get_status(path).object_id
            except (errors.NotFound, errors.ResourceDoesNotExist):
                self.client.workspace.mkdirs(path)
                object_id = self.client.workspace.get_status(path).object_id
            try:
                acl.put_permissions(self.client.api_client, f"folder {path}", "directories", object_id, wanted)
            except (errors.NotFound, errors.ResourceDoesNotExist):
                raise RunFailed(f"folder {path} vanished while its permissions were set",
                                hint="deploy again") from None
            self.say(f"set the top-level permissions on {path}")
        state.folders = {"hash": digest, "paths": paths}
        self.store.write(state)

    def _record(self, state: State, change: ResourceChange, object_id, body: dict, name: str | None,
                acl_digest: str | None = None) -> None:
        entry = {"id": object_id, "name": name, "hash": body_hash(body), "applied_at": now_iso(),
                 "commit": self.record.get("commit")}
        if acl_digest:
            entry["acl"] = acl_digest
        state.set_resource(change.kind, change.key, entry)
        self.store.write(state)

    def _apply_acl(self, state: State, change: ResourceChange, kind, object_id, body: dict, name, wanted,
                   kept: str | None) -> str | None:
        """Set the resource's permissions / grants; on failure the object is recorded without them
        (so the next deploy sets them) before the error goes on."""
        try:
            kind.apply_acl(change.desired, object_id, wanted)
        except BaseException:
            self._record(state, change, object_id, body, name, kept)
            raise
        self.say(f"set the {acl.what(change.kind)} of {change.address} ({len(wanted)} "
                 f"{'principal' if len(wanted) == 1 else 'principals'})")
        return acl.digest(change.kind, wanted)

    def apply_resources(self, state: State, plan: Plan, outcome: Outcome) -> None:
        ids = {(k, key): e["id"] for k, key, e in state.owned() if e.get("id") is not None}
        for change in plan.resources:
            if change.action == "create":
                ids.pop((change.kind, change.key), None)
        resolver = Resolver(plan.desired, ids, self.host)
        for change in plan.resources:
            if change.action == "delete":
                continue
            kind = self.kinds[change.kind]
            d = change.desired
            settings = resolve(d.settings, resolver)
            body = kind.body(d, settings)
            name = kind.name_of(body)
            wanted = kind.acl(d, settings)
            wanted_digest = acl.digest(change.kind, wanted)
            action = change.action
            entry = state.resource(change.kind, change.key)
            kept = entry.get("acl") if entry else None       # what the state says the object has now
            same_body = action in ("update", "unchanged") and entry is not None and \
                entry.get("hash") == body_hash(body)
            acl_due = wanted is not None and kept != wanted_digest
            if action in ("update", "unchanged"):
                action = "unchanged" if same_body and not acl_due else "update"
            object_id = entry.get("id") if entry else None
            if action == "replace":
                object_id = self._replace(state, change, kind, body, name)
                digest_now = None
                if wanted is not None:
                    digest_now = self._apply_acl(state, change, kind, object_id, body, name, wanted, None)
                self._record(state, change, object_id, body, name, digest_now)
                outcome.replaced.append(change.address)
            if action == "update":
                try:
                    if not same_body:
                        object_id = kind.update(d, entry, body)
                    digest_now = kept
                    if acl_due:
                        digest_now = self._apply_acl(state, change, kind, object_id, body, name, wanted, kept)
                    self._record(state, change, object_id, body, name, digest_now)
                    outcome.changed.append(change.address)
                    if not same_body:
                        self.say(f"updated {change.address} ({name}, {singular(change.kind)} {object_id})")
                except Gone:
                    action = "create"
            if action == "create":
                object_id, adopted = self._create(state, change, kind, body, name)
                self.say(f"{'adopted' if adopted else 'created'} {change.address} ({name}, "
                         f"{singular(change.kind)} {object_id})")
                digest_now = None
                if wanted is not None:
                    digest_now = self._apply_acl(state, change, kind, object_id, body, name, wanted, None)
                self._record(state, change, object_id, body, name, digest_now)
                outcome.created.append(change.address)
            elif action == "unchanged":
                outcome.unchanged.append(change.address)
            ids[(change.kind, change.key)] = object_id
            if change.kind == "jobs":
                outcome.jobs[change.key] = {"id": object_id, "url": self.url("jobs", object_id), "name": name}
            outcome.rows.append((change.address, name, action, self.url(change.kind, object_id)))
        for change in plan.resources:
            if change.action == "delete":
                if self._delete(state, change):
                    outcome.deleted.append(change.address)
                    outcome.rows.append((change.address, change.name, "delete", None))

    def _replace(self, state: State, change: ResourceChange, kind, body: dict, name: str | None):
        """A registered model that moves to another catalog or schema: checked, announced in the state,
        deleted, recorded as deleted, then created like any planned create (so a deploy that stops in
        between converges: the next plan creates the model, adopting it if it was created)."""
        if not self.allow_replace:     # stackci deploy refuses such a plan before any change (_refuse_replace)
            raise RunFailed(f"{change.address}: {change.reason}; the deploy stopped before touching the model",
                            hint="deploy with --allow-replace (STACKCI_ALLOW_REPLACE=true) to replace it, or keep "
                                 "its catalog and schema")
        old = change.id
        if name and name != old and kind.exists({"id": name}):
            raise RunFailed(f"{change.address}: registered model {name} already exists and this deployment did not "
                            f"create it; {old} was not deleted",
                            hint="rename the model in the bundle, or delete the existing one")
        state.pending[change.address] = {"name": name, "dkey": change.desired.dkey, "since": now_iso(),
                                         "replaces": old}
        self.store.write(state)
        self.say(f"replacing {change.address}: deleting {old} (Unity Catalog cannot move a model)")
        kind.delete(old)
        items = state.resources.get(change.kind, {})
        items.pop(change.key, None)                 # recorded as deleted; the announced create stays pending
        if not items:
            state.resources.pop(change.kind, None)
        self.store.write(state)
        object_id, _adopted = self._create(state, change, kind, body, name)
        self.say(f"created {change.address} ({name}, {singular(change.kind)} {object_id}) in place of {old}")
        return object_id

    def _create(self, state: State, change: ResourceChange, kind, body: dict, name: str | None):
        """Create, or adopt what an interrupted deploy created (found by deployment key)."""
        pending = state.pending.get(change.address)
        if pending is None:   # announce it (begin() did for planned creates; a vanished update lands here)
            state.pending[change.address] = {"name": name, "dkey": change.desired.dkey, "since": now_iso()}
            self.store.write(state)
        names = [name] + ([pending.get("name")] if pending and pending.get("name") != name else [])
        if kind.kind != "registered_models" or pending:
            found = kind.find_owned(change.desired.dkey, names)
            if found:
                keep, extra = found[0], found[1:]
                for other in extra:
                    kind.delete(other)
                entry = {"id": keep}
                try:
                    object_id = kind.update(change.desired, entry, body)
                except Gone:
                    object_id = None
                if object_id is not None:
                    return object_id, True
        return kind.create(change.desired, body, adopt_ok=pending is not None), False

    def _delete(self, state: State, change: ResourceChange) -> bool:
        kind = self.kinds.get(change.kind)
        if kind is None:
            return False
        deleted = False
        if change.id is not None:
            deleted = kind.delete(change.id)
        elif change.pending:
            dkey = change.pending.get("dkey")
            if dkey and kind.kind != "registered_models":
                for other in kind.find_owned(dkey, [change.pending.get("name")]):
                    deleted = kind.delete(other) or deleted
        state.drop_resource(change.kind, change.key)
        self.store.write(state)
        if deleted:
            self.say(f"deleted {change.address} ({change.name or ''})")
        return deleted or change.id is not None

    # ------------------------------------------------------------------ destroy
    def destroy(self, state: State) -> Outcome:
        outcome = Outcome()
        state.deployment = dict(self.record, status="destroying")
        owned = state.owned()
        owned.sort(key=lambda item: (DELETE_ORDER.index(item[0]) if item[0] in DELETE_ORDER else 99, item[1]))
        for kind, key, entry in owned:
            change = ResourceChange(kind, key, "delete", entry.get("name"), entry.get("id"), "destroy", None, entry)
            if self._delete(state, change):
                outcome.deleted.append(change.address)
                outcome.rows.append((change.address, change.name, "delete", None))
        for address, pending in sorted(state.pending.items()):
            kind, _, key = address.partition(".")
            change = ResourceChange(kind, key, "delete", pending.get("name"), None, "destroy", None, None, pending)
            if self._delete(state, change):
                outcome.deleted.append(address)
            state.pending.pop(address, None)
        files = [FileChange(rel, "delete", e.get("remote") or "") for rel, e in sorted(state.files.items())]
        if files:
            self.say(f"deleting {len(files)} files from {self.bundle.file_path}")
            syncer = Syncer(self.client, self.parallel)
            try:
                syncer.delete_all(files)
            finally:
                for c in syncer.deleted:
                    state.files.pop(c.rel, None)
                outcome.files_deleted = len(syncer.deleted)
                self.store.write(state)
            self._remove_empty_dirs({posixpath.dirname(c.remote) for c in files if c.remote})
        self.store.delete()
        return outcome

    def _remove_empty_dirs(self, dirs: set[str]) -> None:
        base = self.bundle.file_path.rstrip("/")
        every: set[str] = set()
        for d in dirs:
            while d.startswith(base) and d not in every:
                every.add(d)
                d = posixpath.dirname(d)
        for d in sorted(every, key=lambda p: p.count("/"), reverse=True):
            self._remove_folder(d)

    def remove_folders(self) -> None:
        """After destroy: the state and root folders, only if nothing else is left in them."""
        for path in (self.bundle.state_path, self.bundle.file_path, self.bundle.artifact_path,
                     self.bundle.resource_path, self.bundle.root_path):
            self._remove_folder(path)

    def _remove_folder(self, path: str) -> None:
        """Delete an empty folder. Gone already, or holding someone else's files, is fine; anything
        else (no permission, a workspace error) is a warning naming the folder that was left."""
        from databricks.sdk import errors

        try:
            self.client.workspace.delete(path, recursive=False)
        except (errors.NotFound, errors.ResourceDoesNotExist):
            pass
        except errors.DatabricksError as exc:
            if exc.error_code == "DIRECTORY_NOT_EMPTY":
                return           # not empty: files that are not the bundle's stay, with their folder
            from ..dbx import first_line

            message = f"could not remove the folder {path} ({exc.error_code or type(exc).__name__}: " \
                      f"{first_line(exc)}); it is left in the workspace"
            if self.warn is not None:
                self.warn(message, None, None)
            else:
                logger.warning("%s", message)


def run_locked(engine: Engine, command: str, force_lock: bool, body):
    """Take the lock (unless the bundle turns it off), run ``body(state)``, release the lock
    also when the body fails or is interrupted (SIGTERM arrives as KeyboardInterrupt)."""
    lock = engine.lock(command)
    if lock is not None:
        # the state is read while the lock file is read back, and the deploy's last state write
        # goes out while it is read back before deletion: two round trips fewer, same protocol
        previous = lock.acquire(force=force_lock, alongside=engine._read_state_now)
        engine._early_state = lock.early      # the body's read_state() gets it (or its error)
        engine.defer_last_write = True
        if previous is not None:
            from .lock import describe
            logger.warning("took the deployment lock from %s (--force-lock)", describe(previous))
        engine.say(f"lock taken ({lock.path})")
    failed = True
    try:
        result = body()
        failed = False
        return result
    finally:
        if lock is not None:
            last, engine._last_write = engine._last_write, None
            engine.defer_last_write = False
            write = (lambda: engine.store.write(last)) if last is not None else None
            try:
                lock.release(alongside=write)
            except Exception as exc:  # never hide the original error behind a failed release
                if not failed and isinstance(exc, RunFailed):
                    raise
                logger.warning("could not release the deployment lock %s: %s", lock.path, exc)
            if write is not None and not failed and lock.early is not None and lock.early[1] is not None:
                raise lock.early[1]      # the last state write failed: the deploy did too
