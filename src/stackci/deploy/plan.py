"""The plan: what a deploy would upload, delete, create, update and leave alone.

Files are compared by content hash with the state. Resources are compared by a
canonical hash of the request body stackci would send (settings after every
reference is resolved, plus the deployment tags) with the hash recorded when it was
last applied; each resource the state knows is also looked up once, so a job deleted
outside the deploy is planned for re-creation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .. import markdown as md
from ..dbx import request_pool
from . import acl
from .files import FileChange, plan_files
from .resources import (DELETE_ORDER, Desired, Resolver, Unresolved, apply_order, body_hash, desired_resources,
                        resolve, singular)


@dataclass
class ResourceChange:
    kind: str
    key: str
    action: str                      # "create" | "update" | "replace" | "delete" | "unchanged"
    name: str | None
    id: object = None
    reason: str = ""
    desired: Desired | None = None
    entry: dict | None = None        # the state's record
    pending: dict | None = None      # an announced create that was never recorded
    acl_due: bool = False            # its permissions / grants are to be set

    @property
    def address(self) -> str:
        return f"{self.kind}.{self.key}"


@dataclass
class Plan:
    bundle_name: str
    target: str
    host: str
    root_path: str
    files: list[FileChange]
    resources: list[ResourceChange]          # creates/updates/unchanged in apply order, then deletes
    desired: dict = field(default_factory=dict)
    files_root_missing: bool = False
    folder_acl: tuple | None = None          # (paths, acl, digest) when the folders' ACL is to be set
    notes: list = field(default_factory=list)  # warnings for the user: (message, file, line)

    def count(self, action: str) -> int:
        return sum(1 for r in self.resources if r.action == action)

    def file_count(self, action: str) -> int:
        return sum(1 for f in self.files if f.action == action)

    @property
    def counts(self) -> dict:
        return {"create": self.count("create"), "update": self.count("update"), "replace": self.count("replace"),
                "delete": self.count("delete"), "unchanged": self.count("unchanged"), "files_upload": self.file_count("upload"),
                "files_delete": self.file_count("delete"), "files_unchanged": self.file_count("unchanged")}

    @property
    def has_changes(self) -> bool:
        c = self.counts
        return any(c[k] for k in ("create", "update", "replace", "delete", "files_upload", "files_delete")) or \
            self.folder_acl is not None

    # -- rendering ------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "bundle": self.bundle_name, "target": self.target, "host": self.host, "root_path": self.root_path,
            "resources": [{"kind": r.kind, "key": r.key, "name": r.name, "action": r.action, "id": r.id,
                           "reason": r.reason} for r in self.resources],
            "files": {"upload": [{"path": f.rel, "remote": f.remote, "reason": f.reason}
                                 for f in self.files if f.action == "upload"],
                      "delete": [{"path": f.rel, "remote": f.remote} for f in self.files if f.action == "delete"],
                      "unchanged": self.file_count("unchanged")},
            "counts": self.counts,
            "has_changes": self.has_changes,
            "folder_permissions": {"paths": self.folder_acl[0], "access_control_list": self.folder_acl[1]}
            if self.folder_acl else None,
        }

    def headline(self) -> str:
        c = self.counts
        replace = f"{c['replace']} to replace (delete and create again), " if c["replace"] else ""
        return (f"{c['create']} to create, {c['update']} to update, {replace}{c['delete']} to delete, "
                f"{c['unchanged']} unchanged; files: {c['files_upload']} to upload, {c['files_delete']} to delete, "
                f"{c['files_unchanged']} unchanged")

    def text(self) -> str:
        symbol = {"create": "+", "update": "~", "replace": "±", "delete": "-", "unchanged": "="}
        lines = [f"Plan for bundle {self.bundle_name}, target {self.target} ({self.host}, {self.root_path})"]
        width = max((len(r.address) for r in self.resources), default=0)
        for r in self.resources:
            detail = f" ({r.reason})" if r.reason and r.action != "unchanged" else ""
            lines.append(f"  {symbol[r.action]} {r.address.ljust(width)}  {r.action:<9} {r.name or ''}{detail}")
        if not self.resources:
            lines.append("  (no resources)")
        if self.folder_acl:
            lines.append(f"  ~ permissions of {', '.join(self.folder_acl[0])} (the top-level permissions)")
        uploads = [f for f in self.files if f.action == "upload"]
        deletes = [f for f in self.files if f.action == "delete"]
        lines.append(f"Files ({self.file_count('unchanged')} unchanged):")
        lines += [f"  + {f.rel} ({f.reason})" for f in uploads[:50]]
        if len(uploads) > 50:
            lines.append(f"  + … {len(uploads) - 50} more to upload")
        lines += [f"  - {f.rel}" for f in deletes[:50]]
        if len(deletes) > 50:
            lines.append(f"  - … {len(deletes) - 50} more to delete")
        lines.append(self.headline())
        return "\n".join(lines)

    def markdown(self, *, max_resources: int | None = None, max_files: int = 100, cell_limit: int = 300,
                 subtitle: str | None = None) -> str:
        """The plan as Markdown: a table of the resources that change, the files in a folded table.

        Every name, key, path and reason is outside text (it comes from the bundle's YAML) and is
        shown through :func:`span`, so it can never become a link, an image, a mention or HTML.
        At most ``max_resources`` resource rows and ``max_files`` file rows are shown (a line
        says how many more there are); each cell is cut at ``cell_limit`` characters. ``subtitle``
        (Markdown of stackci's own) goes under the heading.
        """
        icon = {"create": "➕ create", "update": "✏️ update", "replace": "⚠️ replace (delete, create)",
                "delete": "🗑️ delete", "unchanged": "unchanged"}
        changed = [r for r in self.resources if r.action != "unchanged"]
        parts = [f"### Plan: {span(self.bundle_name, 100)} → {span(self.target, 100)}", ""]
        if subtitle:
            parts += [subtitle, ""]
        parts += [f"{self.headline()}", ""]
        if changed:
            shown = changed if max_resources is None else changed[:max(0, max_resources)]
            if shown:
                parts.append(md.table(["Resource", "Name", "Action", "Why"],
                                      [[span(r.address, cell_limit), span(r.name or "", cell_limit), icon[r.action],
                                        span(r.reason, cell_limit)] for r in shown]))
            if len(shown) < len(changed):
                parts += ["", f"… and {len(changed) - len(shown)} more resource changes (the full plan is in "
                              "the job log)."]
        else:
            parts.append("No resource changes.")
        if self.folder_acl:
            parts += ["", "The top-level permissions will be set on " + ", ".join(span(p, cell_limit)
                                                                               for p in self.folder_acl[0]) + "."]
        uploads = [f for f in self.files if f.action == "upload"]
        deletes = [f for f in self.files if f.action == "delete"]
        if uploads or deletes:
            limit = max(0, max_files)
            rows = [[span(f.rel, cell_limit), "upload", span(f.reason, cell_limit)] for f in uploads[:limit]]
            rows += [[span(f.rel, cell_limit), "delete", ""] for f in deletes[:max(0, limit - len(rows))]]
            more = len(uploads) + len(deletes) - len(rows)
            body = md.table(["File", "Action", "Why"], rows) if rows else ""
            if more > 0:
                body += ("\n\n" if body else "") + f"… and {more} more"
            parts += ["", md.details(f"Files: {len(uploads)} to upload, {len(deletes)} to delete, "
                                     f"{self.file_count('unchanged')} unchanged", body)]
        return "\n".join(parts) + "\n"

    def json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2, default=str)


# --------------------------------------------------------------------------- safe Markdown
def span(text: object, limit: int = 300) -> str:
    """Outside text as a Markdown code span that is safe in a table cell.

    Inside a code span nothing is interpreted: no links, images, autolinks, mentions, emphasis,
    HTML or entities. Whitespace (newlines too) becomes single spaces, the text is cut at
    ``limit`` characters, the fence is longer than any run of backticks in the text, and pipes
    are escaped for the table (``\\|``; a backslash just before a pipe is kept apart from it by
    a zero-width space, so it cannot escape the escape). ``<!--`` is broken by a zero-width space
    too, so outside text can never look like one of stackci's hidden markers."""
    value = " ".join(str(text).split()).replace("<!--", "<\u200b!--")
    if len(value) > limit:
        value = value[: max(1, limit - 1)] + "…"
    if not value:
        return ""
    value = value.replace("|", "\u200b\\|")
    longest = max((len(m) for m in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith(("`", " ")) or value.endswith(("`", " ")) or longest else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def make_plan(bundle, state, client, kinds: dict, host: str, parallel: int = 8) -> Plan:
    """Compare the bundle with the state and the workspace (read-only)."""
    from databricks.sdk import errors

    desired = desired_resources(bundle)
    order = apply_order(desired)
    state_files = dict(state.files)
    recorded = [(kind, key, entry) for kind, key, entry in state.owned() if (kind, key) in desired
                and kind in kinds and entry.get("id") is not None]

    def folder_exists() -> bool:
        try:
            client.workspace.get_status(bundle.file_path)
            return True
        except (errors.NotFound, errors.ResourceDoesNotExist):
            return False

    # the local files are listed and hashed first, then the workspace is asked, in parallel, whether
    # the files folder still exists (if not, every file is new again) and which recorded objects
    # still exist (one lookup each). Not side by side: hashing waits on the disk, and every time it
    # does, the threads building requests and reading answers keep the interpreter lock for a
    # switch interval, which made the hashing of 300 files ten times slower than the hashing alone
    for sf in bundle.sync_files.values():
        sf.sha256                                  # noqa: B018 - reads the file once
    with request_pool(parallel, "stackci-plan", len(recorded) + (1 if state_files else 0)) as pool:
        folder = pool.submit(folder_exists) if state_files else None
        lookups = [pool.submit(kinds[kind].exists, entry) for kind, key, entry in recorded]
        root_missing = folder is not None and not folder.result()
        alive = {(kind, key): future.result() for (kind, key, _), future in zip(recorded, lookups)}
    if root_missing:
        state_files = {}
    files = plan_files(bundle, state_files)
    if root_missing:
        for f in files:
            if f.action == "upload":
                f.reason = f"{bundle.file_path} is missing in the workspace"

    ids: dict = {}
    fresh: set = set()               # resources that get a new id in this deploy
    changes: list[ResourceChange] = []
    notes: list = []
    resolver = Resolver(desired, ids, host)
    for node in order:
        d = desired[node]
        kind = kinds[d.kind]
        entry = state.resource(*node)
        pending = state.pending.get(d.address)
        if entry is not None and entry.get("id") is not None and alive.get(node, False):
            ids[node] = entry["id"]
        try:
            settings = resolve(d.settings, resolver)
            body = kind.body(d, settings)
            name = kind.name_of(body)
            digest = body_hash(body)
            waiting = None
        except Unresolved as exc:
            settings, body, digest, waiting = d.settings, None, None, exc.ref
            name = kind.name_of(kind.body(d, d.settings))
        wanted = kind.acl(d, settings)
        acl_digest = acl.digest(d.kind, wanted)
        acl_due = wanted is not None and (entry is None or entry.get("acl") != acl_digest)
        if wanted is None and entry is not None and entry.get("acl"):
            loc = d.location
            notes.append((f"{d.address} no longer sets {acl.what(d.kind)}: the {singular(d.kind)} keeps the ones "
                          f"the last deploy gave it (like the Databricks CLI, stackci does not reset them); set "
                          f"the {acl.what(d.kind)} you want instead", getattr(loc, "file", None),
                          getattr(loc, "line", None)))
        if entry is None or entry.get("id") is None:
            reason = "new"
            if pending:
                reason = "new; an interrupted deploy may have created it already, it will be adopted"
            changes.append(ResourceChange(d.kind, d.key, "create", name, None, reason, d, None, pending,
                                          acl_due=wanted is not None))
            fresh.add(node)
        elif not alive.get(node, False):
            changes.append(ResourceChange(d.kind, d.key, "create", name, entry.get("id"),
                                          f"{singular(d.kind)} {entry.get('id')} was deleted outside the deploy; "
                                          "it will be created again", d, entry, pending, acl_due=wanted is not None))
            fresh.add(node)
            ids.pop(node, None)
        elif waiting is not None:
            changes.append(ResourceChange(d.kind, d.key, "update", name, entry["id"],
                                          f"{waiting} gets a new value in this deploy", d, entry, acl_due=acl_due))
        elif digest != entry.get("hash") and d.kind == "registered_models" and body is not None \
                and kind.moves(entry, body):
            changes.append(ResourceChange(d.kind, d.key, "replace", name, entry["id"],
                                          kind.replace_reason(entry, body), d, entry, acl_due=wanted is not None))
            fresh.add(node)
            ids.pop(node, None)
        elif digest != entry.get("hash"):
            reason = "settings changed"
            if entry.get("name") and name and entry.get("name") != name:
                reason = f"renamed from {entry['name']!r}"
            if acl_due:
                reason += f"; {acl.what(d.kind)} changed"
            changes.append(ResourceChange(d.kind, d.key, "update", name, entry["id"], reason, d, entry,
                                          acl_due=acl_due))
        elif acl_due:
            changes.append(ResourceChange(d.kind, d.key, "update", name, entry["id"],
                                          f"{acl.what(d.kind)} changed" if entry.get("acl") else
                                          f"{acl.what(d.kind)} to set", d, entry, acl_due=True))
        else:
            changes.append(ResourceChange(d.kind, d.key, "unchanged", name, entry["id"], "", d, entry))

    removed = [(kind, key, entry) for kind, key, entry in state.owned() if (kind, key) not in desired]
    removed.sort(key=lambda item: (DELETE_ORDER.index(item[0]) if item[0] in DELETE_ORDER else -1, item[1]))
    for kind, key, entry in removed:
        changes.append(ResourceChange(kind, key, "delete", entry.get("name"), entry.get("id"),
                                      "no longer in the bundle", None, entry))
    # creates that an interrupted deploy announced for resources the bundle no longer has
    for address, pending in sorted(state.pending.items()):
        kind, _, key = address.partition(".")
        if (kind, key) in desired or state.resource(kind, key) is not None or kind not in kinds:
            continue
        changes.append(ResourceChange(kind, key, "delete", pending.get("name"), None,
                                      "created by an interrupted deploy and no longer in the bundle", None, None,
                                      pending))
    folders = acl.folder_acl(bundle)
    folder_plan = None
    if folders is not None:
        folder_digest = acl.folder_digest(*folders)
        if root_missing or state.folders.get("hash") != folder_digest:
            folder_plan = (folders[0], folders[1], folder_digest)
    return Plan(bundle.name, bundle.target, host, bundle.root_path, files, changes, desired, root_missing,
                folder_plan, notes)
