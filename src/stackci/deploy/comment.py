"""``stackci plan --comment``: one pull-request comment with the plan of every target.

The comment is found again on later pushes by a hidden marker (``<!-- stackci:plan:<bundle> -->``)
and updated in place, so a pull request carries one plan comment per bundle however often it
is pushed. It holds an overview row and a section per target, each section opened by its own
hidden marker with the target, the commit it was planned at and its counts; a plan of targets T
replaces only T's sections and rows and keeps the other targets' (planned by another job, with
other credentials, or on an earlier push: such a section says so). Jobs that write at the same
time are reconciled by :func:`stackci.hosting.merge_pr_comment` (read back, merge again). GitHub: the issues-comments API with ``--github-token`` / ``STACKCI_GITHUB_TOKEN``,
else ``GITHUB_TOKEN`` (the job needs ``permissions: pull-requests: write``). Azure Repos: a
pull-request thread with the job's ``System.AccessToken`` (mapped as ``SYSTEM_ACCESSTOKEN``;
the build service needs "Contribute to pull requests").

Outside a pull request (a push, a schedule, a laptop) there is nothing to comment on: the
command says so in a notice and carries on. Everything in the comment that comes from the
bundle (names, keys, paths) is shown as inert code spans (see :func:`stackci.deploy.plan.span`),
and the body is kept under GitHub's 65536-character limit by showing fewer rows, with a note.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Mapping

from .. import log, markdown as md
from .plan import Plan, span

logger = log.get("plan")

#: GitHub refuses bodies over 65536 characters; stay well below (the marker and a margin)
BODY_LIMIT = 60000
#: (resource rows, file rows) per target, tried in this order until the comment fits
ROW_LIMITS = ((None, 100), (200, 50), (50, 10), (20, 0), (5, 0), (0, 0))


@dataclass(frozen=True)
class Where:
    hosting: str         # "github" | "azure"
    number: int          # the pull request
    token: str | None    # GitHub: the token to use; Azure: None (SYSTEM_ACCESSTOKEN)


def find_pull_request(app, github_token: str | None) -> Where | None:
    """Where the comment goes, or None (after a notice saying why) when there is no pull request."""
    from ..errors import ConfigError
    from ..hosting import detect_hosting, pull_request_number
    from ..hosting.azure import TOKEN_HINT

    environ = app.environ
    hosting = detect_hosting(environ)
    if hosting is None:
        if environ.get("TF_BUILD", "").lower() == "true":
            why = (f"the repository is on {environ.get('BUILD_REPOSITORY_PROVIDER')}, and stackci comments only "
                   "on Azure Repos pull requests from Azure Pipelines")
        else:
            why = "this is not a GitHub Actions or Azure Pipelines job"
        app.platform.annotate("notice", f"--comment: no pull-request comment posted: {why}",
                              title="stackci: plan")
        return None
    number = pull_request_number(environ)
    if number is None:
        app.platform.annotate("notice", "--comment: this job does not run for a pull request, so no comment was "
                                        "posted (the plan is in the log and the step summary)",
                              title="stackci: plan")
        return None
    if hosting == "github":
        token = (github_token or "").strip() or environ.get("GITHUB_TOKEN", "").strip()
        if not token:
            raise ConfigError("--comment needs a GitHub token to post the plan on the pull request",
                              hint="pass --github-token (STACKCI_GITHUB_TOKEN), or set GITHUB_TOKEN: "
                                   "${{ github.token }} with permissions: pull-requests: write")
        app.platform.mask(token)
        return Where("github", number, token)
    app.platform.mask(environ.get("SYSTEM_ACCESSTOKEN", "").strip())
    if not environ.get("SYSTEM_ACCESSTOKEN", "").strip():
        raise ConfigError("--comment needs the job's access token to post the plan on the pull request",
                          hint=TOKEN_HINT)
    return Where("azure", number, None)


def marker_for(bundle_name: str) -> str:
    """``plan:<bundle>``: one comment per bundle (a repository may hold several)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", bundle_name).strip("-.") or "bundle"
    return f"plan:{name[:80]}"


def _commit(environ: Mapping[str, str]) -> str | None:
    """The pushed commit (a PR build's GITHUB_SHA is GitHub's merge commit, not the head)."""
    path = environ.get("GITHUB_EVENT_PATH")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                head = ((json.load(fh).get("pull_request") or {}).get("head") or {}).get("sha")
            if isinstance(head, str) and head:
                return head
        except (OSError, ValueError, AttributeError):
            pass
    return environ.get("SYSTEM_PULLREQUEST_SOURCECOMMITID") or environ.get("GITHUB_SHA") \
        or environ.get("BUILD_SOURCEVERSION")


@dataclass
class Section:
    """One target's part of the comment: its metadata (in the hidden marker) and its Markdown."""

    target: str
    meta: dict
    text: str

    @property
    def at(self) -> float:
        value = self.meta.get("at")
        return float(value) if isinstance(value, (int, float)) else 0.0

    @property
    def commit(self) -> str:
        value = self.meta.get("commit")
        return value if isinstance(value, str) else ""


SECTION_END = "<!-- stackci:plan-target-end -->"
_SECTION = re.compile(r"<!-- stackci:plan-target (\{[^<>]*\}) -->\n(.*?)\n" + re.escape(SECTION_END), re.S)
COUNT_KEYS = ("create", "update", "delete", "unchanged", "files_upload", "files_delete")


def _meta_comment(meta: dict) -> str:
    """The hidden marker that opens a section: its metadata as JSON in which no ``<``, ``>``, ``&`` or
    ``-`` appears literally (so nothing in it can close the HTML comment)."""
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("-", "\\u002d")):
        text = text.replace(char, escaped)
    return f"<!-- stackci:plan-target {text} -->"


def parse_sections(body: str) -> list[Section]:
    """The target sections of a comment body, in order; anything unreadable is skipped (it is written
    again by the next plan of its target)."""
    out: list[Section] = []
    for m in _SECTION.finditer(body or ""):
        try:
            meta = json.loads(m.group(1))
        except ValueError:
            continue
        if isinstance(meta, dict) and isinstance(meta.get("target"), str) and meta["target"]:
            out.append(Section(meta["target"], meta, m.group(2).rstrip("\n")))
    return out


def merge_existing(bodies: list[str]) -> list[Section]:
    """The newest section of each target over every comment of ours (the oldest comment's order first)."""
    chosen: dict[str, Section] = {}
    for body in bodies:
        for section in parse_sections(body):
            old = chosen.get(section.target)
            if old is None or section.at > old.at:
                chosen[section.target] = section
    return list(chosen.values())


def _short(commit: str) -> str:
    return commit[:12]


def _overview(sections: list[Section], head: str) -> str:
    rows = []
    for s in sections:
        c = s.meta.get("counts") if isinstance(s.meta.get("counts"), dict) else {}
        cells = [str(c.get(k)) if isinstance(c.get(k), int) else "?" for k in COUNT_KEYS]
        at = span(_short(s.commit), 20) if s.commit else "?"
        if s.commit and head and s.commit != head:
            at += " (earlier push)"
        changes = "yes" if s.meta.get("changes") else "no"
        if isinstance(c.get("replace"), int) and c["replace"]:
            changes += f", ⚠️ {c['replace']} to replace"
        rows.append([span(s.target, 100), changes, *cells, at])
    return md.table(["Target", "Changes", "Create", "Update", "Delete", "Unchanged", "Files to upload",
                     "Files to delete", "Planned at"], rows)


def _run_link(environ: Mapping[str, str]) -> str | None:
    from .guard import ci_run_url

    run = ci_run_url(environ)
    if run and re.fullmatch(r"https?://[A-Za-z0-9.:-]+/[A-Za-z0-9._~%/?=&+-]*", run):
        return f"[CI run]({run})"
    return None


def _stamp(now: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now))


def new_section(plan: Plan, environ: Mapping[str, str], *, now: float, run_id: str, resources, files) -> Section:
    commit = _commit(environ) or ""
    facts = [f"planned at commit {span(_short(commit), 20)}" if commit else "planned at an unknown commit"]
    link = _run_link(environ)
    if link:
        facts.append(link)
    facts.append(_stamp(now))
    text = plan.markdown(max_resources=resources, max_files=files, cell_limit=200,
                         subtitle="<sub>" + " · ".join(facts) + "</sub>").rstrip("\n")
    meta = {"v": 1, "target": plan.target, "commit": commit, "at": round(now, 3), "id": run_id,
            "counts": {k: plan.counts[k] for k in (*COUNT_KEYS, "replace")}, "changes": plan.has_changes}
    return Section(plan.target, meta, text)


def _stub(section: Section) -> Section:
    """A section cut to its heading and headline, to make room for the others."""
    lines = [line for line in section.text.splitlines() if line.strip()]
    kept = lines[:3]
    kept.append(f"… (details dropped to fit the comment size limit; the next plan of "
                f"{span(section.target, 100)} shows them again)")
    return Section(section.target, section.meta, "\n\n".join(kept))


def assemble(bundle: str, sections: list[Section], environ: Mapping[str, str], *, head: str, now: float) -> str:
    """The comment's Markdown (without the comment's own marker)."""
    parts = [f"## 📋 Deployment plan for {span(bundle, 100)}", "", _overview(sections, head), ""]
    for s in sections:
        if s.commit and head and s.commit != head:
            parts += [f"> ⚠️ {span(s.target, 100)} was planned at commit {span(_short(s.commit), 20)}, before the "
                      f"latest plan here (commit {span(_short(head), 20)}); this section is refreshed by the next "
                      f"plan of {span(s.target, 100)}.", ""]
        parts += [_meta_comment(s.meta), s.text, "", SECTION_END, ""]
    link = _run_link(environ)
    facts = [f"last update {_stamp(now)}" + (f" by a {link}" if link else "")]
    parts.append("<sub>" + " · ".join(facts) + " · posted by stackci plan; a plan of some targets replaces only "
                 "their sections, so several jobs can share this comment</sub>")
    return "\n".join(parts)


def render(plans: list[Plan], environ: Mapping[str, str], *, existing: list[str] = (), limit: int = BODY_LIMIT,
           now: float | None = None, run_id: str = "") -> str:
    """The comment's Markdown (without the marker): an overview row and a section per target, the
    sections of ``plans`` replacing those of the same targets in the ``existing`` bodies (unless one of
    those was planned later than ``now``: a newer plan is never overwritten by an older one)."""
    now = time.time() if now is None else now
    bundle = plans[0].bundle_name if plans else "bundle"
    head = _commit(environ) or ""
    merged = merge_existing(list(existing))
    newer = {s.target for s in merged if s.at > round(now, 3)}     # planned after us (a later push): kept
    plans = [plan for plan in plans if plan.target not in newer]
    planned = {plan.target for plan in plans}
    kept = [s for s in merged if s.target not in planned]
    order = [s.target for s in kept]
    order += [plan.target for plan in plans if plan.target not in order]

    def attempt(others: list[Section]) -> str | None:
        for resources, files in ROW_LIMITS:
            ours = {plan.target: new_section(plan, environ, now=now, run_id=run_id, resources=resources,
                                             files=files) for plan in plans}
            by_target = {**{s.target: s for s in others}, **ours}
            body = assemble(bundle, [by_target[t] for t in order], environ, head=head, now=now)
            if len(body) <= limit:
                if (resources, files) != ROW_LIMITS[0]:
                    logger.info("the plan comment shows fewer rows (%s resources, %s files per target) to stay "
                                "under GitHub's comment size limit", "all" if resources is None else resources,
                                files)
                return body
        return None

    body = attempt(kept)
    if body is None and kept:
        logger.info("the other targets' sections of the plan comment are shortened to stay under GitHub's "
                    "comment size limit")
        body = attempt([_stub(s) for s in kept])
    if body is not None:
        return body
    # the headlines alone are too long (hundreds of targets): cut, and say so
    body = assemble(bundle, [new_section(plan, environ, now=now, run_id=run_id, resources=0, files=0)
                             for plan in plans], environ, head=head, now=now)
    note = "\n\n… (cut to fit the comment size limit; the full plan is in the job log)\n"
    return body[: limit - len(note)] + note


def accepted(body: str, plans: list[Plan], run_id: str, now: float) -> bool:
    """Whether ``body`` still holds this run's section of every planned target (or a newer plan of it)."""
    found = {s.target: s for s in parse_sections(body)}
    for plan in plans:
        s = found.get(plan.target)
        if s is None or (s.meta.get("id") != run_id and s.at <= round(now, 3)):
            return False
    return True


def post(app, where: Where, plans: list[Plan], *, transport=None):
    """Merge this run's targets into the plan comment; returns :class:`stackci.hosting.MergeResult`."""
    import uuid

    from ..hosting import merge_pr_comment

    now = time.time()
    run_id = uuid.uuid4().hex[:16]
    marker = marker_for(plans[0].bundle_name)
    result = merge_pr_comment(
        app.environ, marker,
        lambda bodies: render(plans, app.environ, existing=bodies, now=now, run_id=run_id),
        lambda body: accepted(body, plans, run_id, now),
        pr=where.number, token=where.token, transport=transport)
    targets = ", ".join(plan.target for plan in plans)
    if not result.complete:
        app.platform.warning(f"the plan comment on pull request #{where.number} may lack the plan of {targets}: "
                             f"other jobs rewrote it {result.attempts} times in a row; the plan is in this job's "
                             "log and summary (re-run the job to post it)", title="stackci: plan")
    what = "created" if result.created else "updated"
    logger.info("%s the plan comment on pull request #%d (%s): %s", what, where.number, targets, result.url)
    return result
