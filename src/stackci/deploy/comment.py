"""``stackci plan --comment``: one pull-request comment with the plan of every requested target.

The comment is found again on later pushes by a hidden marker (``<!-- stackci:plan:<bundle> -->``)
and updated in place, so a pull request carries one plan comment per bundle however often it
is pushed. GitHub: the issues-comments API with ``--github-token`` / ``STACKCI_GITHUB_TOKEN``,
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

from .. import log
from .plan import Plan, span, table

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


def _overview(plans: list[Plan]) -> str:
    rows = []
    for plan in plans:
        c = plan.counts
        rows.append([span(plan.target, 100), "yes" if plan.has_changes else "no", str(c["create"]),
                     str(c["update"]), str(c["delete"]), str(c["unchanged"]), str(c["files_upload"]),
                     str(c["files_delete"])])
    return table(["Target", "Changes", "Create", "Update", "Delete", "Unchanged", "Files to upload",
                  "Files to delete"], rows)


def render(plans: list[Plan], environ: Mapping[str, str], *, limit: int = BODY_LIMIT,
           now: float | None = None) -> str:
    """The comment's Markdown (without the marker): an overview table, then each target's plan."""
    from .guard import ci_run_url

    bundle = plans[0].bundle_name if plans else "bundle"
    head = [f"## 📋 Deployment plan for {span(bundle, 100)}", ""]
    facts = []
    commit = _commit(environ)
    if commit:
        facts.append(f"commit {span(commit[:12], 20)}")
    run = ci_run_url(environ)
    if run and re.fullmatch(r"https?://[A-Za-z0-9.:-]+/[A-Za-z0-9._~%/?=&+-]*", run):
        facts.append(f"[CI run]({run})")
    facts.append("updated " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() if now is None else now)))
    foot = ["", "<sub>" + " · ".join(facts) + " · posted by stackci plan; this comment is updated on every "
                                              "push</sub>"]
    overview = [_overview(plans), ""]
    body = ""
    for resources, files in ROW_LIMITS:
        sections = [plan.markdown(max_resources=resources, max_files=files, cell_limit=200) for plan in plans]
        body = "\n".join(head + overview + sections + foot)
        if len(body) <= limit:
            if (resources, files) != ROW_LIMITS[0]:
                logger.info("the plan comment shows fewer rows (%s resources, %s files per target) to stay under "
                            "GitHub's comment size limit", "all" if resources is None else resources, files)
            return body
    # the headlines alone are too long (hundreds of targets): cut, and say so
    note = "\n\n… (cut to fit the comment size limit; the full plan is in the job log)\n"
    return body[: limit - len(note)] + note


def post(app, where: Where, plans: list[Plan], *, transport=None):
    """Create or update the plan comment; returns :class:`stackci.hosting.CommentResult`."""
    from ..hosting import upsert_pr_comment

    body = render(plans, app.environ)
    marker = marker_for(plans[0].bundle_name)
    result = upsert_pr_comment(app.environ, marker, body, pr=where.number, token=where.token,
                               transport=transport)
    what = "created" if result.created else "updated"
    logger.info("%s the plan comment on pull request #%d: %s", what, where.number, result.url)
    return result
