"""``stackci cut-release``: version, release branch, tag, notes, GitHub Release, deploy dispatch.

Everything is checked before anything is pushed: the inputs, the checkout (not
shallow, clean, a known ref, not an unpublished detached HEAD), the credentials and
push permission, and the remote's branches and tags. Then the branch and the tag
go up in one atomic, never forced push (or, on Azure Repos, through its REST API
with the job token), the GitHub Release is created, and the deploy workflow is
dispatched. A re-run finds what already exists at the same commit and finishes
what is missing; a branch or tag at another commit is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import click

from .. import log, markdown
from ..context import App
from ..errors import ConfigError
from . import notes as release_notes
from .git import Git, RemoteRef
from .versions import BUMPS, TagPattern, Version, check_prerelease_name, next_version

logger = log.get("release")

HOSTINGS = ("auto", "github", "azure", "none")


@dataclass
class Options:
    bump: str | None
    version: str | None
    prerelease: str | None
    from_ref: str | None
    branch_pattern: str | None
    release_branch: str | None
    tag_pattern: str
    notes: str
    dispatch: str | None
    remote: str
    repo: Path
    hosting: str
    token: str | None
    dry_run: bool


@dataclass
class Plan:
    version: Version
    tag: str
    branch: str
    sha: str
    previous: str | None = None           # tag of the previous release, for the notes
    previous_commit: str | None = None
    branch_state: str = "create"          # create | exists | fast-forward
    branch_old: str | None = None
    tag_state: str = "create"             # create | exists
    notes: str = ""
    reused: bool = False                  # the commit was already released as this version
    bump_ignored: bool = False            # --bump was not applied: the commit already carries the latest release
    release_url: str = ""
    done: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- inputs
def check_inputs(opts: Options) -> tuple[Version | None, TagPattern, TagPattern | None]:
    """Pure checks of the options: each failure is one line, exit 2, before git is touched."""
    repo = Path(opts.repo)
    if not repo.exists():
        raise ConfigError(f"--repo {str(repo)!r} does not exist",
                          hint="pass the folder of your project's git checkout (STACKCI_REPO), or run in it")
    if opts.bump and opts.version:
        raise ConfigError("give either --bump or --version, not both",
                          hint="--bump computes the next version from the tags; --version sets it")
    if not opts.bump and not opts.version:
        raise ConfigError("give --bump major|minor|patch or --version X.Y.Z")
    version = Version.parse(opts.version.removeprefix("v")) if opts.version else None
    if version is not None and version.build:
        raise ConfigError(f"--version {opts.version} has build metadata (+...), which tags cannot order",
                          hint="drop the +... part")
    if opts.prerelease:
        check_prerelease_name(opts.prerelease)
    if opts.branch_pattern and opts.release_branch:
        raise ConfigError("give either --branch-pattern or --release-branch, not both",
                          hint="--branch-pattern makes one branch per version; --release-branch moves one branch")
    tags = TagPattern(opts.tag_pattern)
    branches = None
    if not opts.release_branch:
        branches = TagPattern(opts.branch_pattern or "release/v{version}", "--branch-pattern")
    elif not _valid_branch_name(opts.release_branch):
        raise ConfigError(f"--release-branch {opts.release_branch!r} is not a valid branch name")
    if opts.notes != "auto":
        path = Path(opts.notes)
        if not path.is_file():
            raise ConfigError(f"--notes {opts.notes}: no such file", hint="pass auto or the path of a Markdown file")
    if opts.hosting not in HOSTINGS:
        raise ConfigError(f"--hosting {opts.hosting!r}", hint=f"use one of {', '.join(HOSTINGS)}")
    return version, tags, branches


def _valid_branch_name(name: str) -> bool:
    return bool(name) and not any(c in name for c in " ~^:?*[\\") and ".." not in name \
        and not name.startswith(("-", "/")) and not name.endswith(("/", ".lock", "."))


# --------------------------------------------------------------------------- hosting
class Remote:
    """Where the release goes: reads the remote's refs and publishes branch and tag."""

    def refs(self) -> dict[str, RemoteRef]:  # pragma: no cover - abstract
        raise NotImplementedError

    def publish(self, plan: Plan, message: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class GitRemote(Remote):
    def __init__(self, git: Git, remote: str) -> None:
        self.git, self.remote = git, remote

    def refs(self):
        return self.git.ls_remote(self.remote)

    def publish(self, plan: Plan, message: str) -> None:
        refspecs = []
        if plan.branch_state != "exists":
            refspecs.append(f"{plan.sha}:refs/heads/{plan.branch}")
        if plan.tag_state == "create":
            local = self.git.local_tags().get(plan.tag)
            if local is None:
                self.git.run("tag", "-a", "--cleanup=verbatim", "-F", "-", plan.tag, plan.sha, input=message)
            elif local != plan.sha:
                raise ConfigError(f"local tag {plan.tag} points at {local[:12]}, not {plan.sha[:12]}",
                                  hint=f"delete the local tag (git tag -d {plan.tag}) and re-run")
            refspecs.append(f"refs/tags/{plan.tag}:refs/tags/{plan.tag}")
        if refspecs:
            self.git.push(self.remote, refspecs)


class AzureRemote(Remote):
    """Azure Repos through REST with the job token: works without persisted checkout credentials,
    and every ref update's ``updateStatus`` is checked."""

    def __init__(self, client) -> None:
        self.client = client

    def refs(self):
        found = {}
        for prefix in ("heads/", "tags/"):
            for ref in self.client.get_refs(prefix):
                found[ref.name] = RemoteRef(ref.name, ref.object_id, ref.commit)
        return found

    def publish(self, plan: Plan, message: str) -> None:
        from ..hosting.azure import ZERO_SHA

        if plan.branch_state != "exists":
            self.client.update_refs([(f"refs/heads/{plan.branch}", plan.branch_old or ZERO_SHA, plan.sha)])
        if plan.tag_state == "create":
            self.client.create_annotated_tag(plan.tag, plan.sha, message)


# --------------------------------------------------------------------------- checks
def check_checkout(git: Git, opts: Options, platform: str) -> str:
    """The commit to release, after the checkout's preconditions. Raises ConfigError."""
    git.toplevel()
    git.remote_url(opts.remote)
    if git.is_shallow():
        fix = ("set fetchDepth: 0 and fetchTags: true on the checkout step" if platform == "azure"
               else "set fetch-depth: 0 on actions/checkout" if platform == "github"
               else "run git fetch --unshallow --tags")
        raise ConfigError("the checkout is shallow: the previous tags and commits are missing, so the version "
                          "and the notes cannot be computed", hint=fix)
    dirty = git.dirty_files()
    if dirty:
        listed = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        raise ConfigError(f"the working tree has uncommitted changes ({listed})",
                          hint="commit or discard them; a release is cut from committed history only")
    if opts.from_ref:
        sha = git.resolve(opts.from_ref) or git.resolve(f"{opts.remote}/{opts.from_ref}")
        if sha is None:
            raise ConfigError(f"--from {opts.from_ref!r} is not a known branch, tag or commit",
                              hint=f"fetch it first (git fetch {opts.remote} {opts.from_ref}) or check the name")
        return sha
    sha = git.resolve("HEAD")
    if sha is None:
        raise ConfigError("the repository has no commits", hint="commit something first")
    if git.current_branch() is None and not git.remote_branches_containing(sha, opts.remote):
        raise ConfigError(f"HEAD is detached at {sha[:12]}, a commit no branch of {opts.remote} contains",
                          hint="check out a branch, or pass --from with the branch or commit to release")
    return sha


def choose_version(opts: Options, fixed: Version | None, tags: TagPattern, sha: str,
                   known: dict[str, str]) -> tuple[Version, bool, bool]:
    """The version to release, whether ``sha`` already carries it (a re-run), and whether that
    means ``--bump`` was not applied (the latest release is at ``sha``). ``known``: tag → commit."""
    versions = {v: name for name, v in ((n, tags.match(n)) for n in known) if v is not None}
    latest = max(versions, default=None)
    if fixed is None and latest is not None and known[versions[latest]] == sha:
        same_kind = (latest.pre[:1] == (opts.prerelease,)) if opts.prerelease else not latest.is_prerelease
        if same_kind:
            return latest, True, True
    version = next_version(versions, bump=opts.bump, version=fixed, prerelease=opts.prerelease)
    name = tags.format(version)
    if name in known:
        if known[name] == sha:
            return version, True, False
        raise ConfigError(f"tag {name} already exists at {known[name][:12]}, not at {sha[:12]}",
                          hint="choose another --version (a released version never moves)")
    if latest is not None and not version > latest:
        raise ConfigError(f"version {version} is not greater than the latest release {latest} "
                          f"(tag {versions[latest]})", hint="choose a greater --version or another --bump")
    return version, False, False


def make_plan(git: Git, remote: Remote, opts: Options, fixed: Version | None, tags: TagPattern,
              branches: TagPattern | None, sha: str) -> Plan:
    remote_refs = remote.refs()
    known = git.local_tags()
    for name, ref in remote_refs.items():
        if name.startswith("refs/tags/"):
            known[name[len("refs/tags/"):]] = ref.commit
    version, reused, bump_ignored = choose_version(opts, fixed, tags, sha, known)
    plan = Plan(version=version, tag=tags.format(version), sha=sha, reused=reused, bump_ignored=bump_ignored,
                branch=branches.format(version) if branches else opts.release_branch)
    if plan.tag in known and known[plan.tag] == sha:
        on_remote = remote_refs.get(f"refs/tags/{plan.tag}")
        plan.tag_state = "exists" if on_remote and on_remote.commit == sha else "create"
    branch = remote_refs.get(f"refs/heads/{plan.branch}")
    if branch is not None:
        plan.branch_old = branch.commit
        if branch.commit == sha:
            plan.branch_state = "exists"
        elif branches is not None:
            raise ConfigError(f"branch {plan.branch} already exists at {branch.commit[:12]}, not at {sha[:12]}",
                              hint="choose another version, or delete the branch if it was cut by mistake")
        elif not git.has_commit(branch.commit):
            raise ConfigError(f"branch {plan.branch} on {opts.remote} is at {branch.commit[:12]}, a commit this "
                              f"checkout does not have", hint=f"fetch it (git fetch {opts.remote} {plan.branch}) "
                                                          "or check out with full history")
        elif git.is_ancestor(branch.commit, sha):
            plan.branch_state = "fast-forward"
        else:
            raise ConfigError(f"branch {plan.branch} cannot fast-forward from {branch.commit[:12]} to {sha[:12]}: "
                              f"it has commits that {sha[:12]} does not contain",
                              hint=f"merge {plan.branch} into the branch you release from; stackci never "
                                   "force-pushes")
    # Notes: since the previous release (a prerelease counts only for the next prerelease).
    older = [(v, n) for n, v in ((n, tags.match(n)) for n in known) if v is not None and v < version
             and (version.is_prerelease or not v.is_prerelease) and git.has_commit(known[n])]
    if older:
        plan.previous = max(older)[1]
        plan.previous_commit = known[plan.previous]
    return plan


# --------------------------------------------------------------------------- the command
def hosting_of(opts: Options, app: App) -> str:
    from ..hosting import detect_hosting

    return (detect_hosting(app.environ) or "none") if opts.hosting == "auto" else opts.hosting


def cut_release(app: App, opts: Options, *, transport=None) -> Plan:
    fixed, tags, branches = check_inputs(opts)
    hosting = hosting_of(opts, app)
    if opts.dispatch and hosting != "github":
        raise ConfigError("--dispatch needs GitHub (workflow_dispatch)",
                          hint="on Azure Pipelines the push of the release branch triggers the prod pipeline "
                               "itself; leave --dispatch empty")
    token = opts.token or app.environ.get({"github": "GITHUB_TOKEN", "azure": "SYSTEM_ACCESSTOKEN"}.get(hosting, ""),
                                          "")
    app.platform.mask(token)
    git = Git(opts.repo, app.environ)
    if not git.has_identity():
        name, email = {"github": ("github-actions[bot]", "41898282+github-actions[bot]@users.noreply.github.com"),
                       "azure": ("Azure Pipelines", "azure-pipelines@noreply.invalid")}.get(
            hosting, ("stackci", "stackci@noreply.invalid"))
        git.identity = ["-c", f"user.name={name}", "-c", f"user.email={email}"]
    progress = log.Progress(logger, "cut-release", clock=app.clock)
    sha = check_checkout(git, opts, app.platform.name)

    github = azure = None
    if hosting == "github":
        from ..hosting import GitHub
        github = GitHub.from_environ(app.environ, token=token, transport=transport)
        if github.can_push() is False:
            from ..hosting import PermissionDenied
            raise PermissionDenied(f"the token may not push to {github.repository}",
                                   hint="give the job permissions: contents: write, or use a token with write "
                                        "access to the repository")
        remote: Remote = GitRemote(git, opts.remote)
    elif hosting == "azure":
        from ..hosting import AzureRepos
        azure = AzureRepos.from_environ(app.environ, token=token, transport=transport)
        remote = AzureRemote(azure)
    else:
        remote = GitRemote(git, opts.remote)

    progress.say(f"releasing {sha[:12]}; reading branches and tags of {opts.remote}")
    plan = make_plan(git, remote, opts, fixed, tags, branches, sha)
    if opts.notes == "auto":
        rev_range = f"{plan.previous_commit}..{sha}" if plan.previous_commit else sha
        compare = github.web_url("compare", f"{plan.previous}...{plan.tag}") if github and plan.previous else None
        plan.notes = release_notes.render(git.log(rev_range), previous=plan.previous, compare_url=compare)
    else:
        plan.notes = Path(opts.notes).read_text(encoding="utf-8")
    plan.notes = app.platform.redact(plan.notes)      # the tag message and the release body: never a secret
    progress.say(f"version {plan.version}: branch {plan.branch} ({plan.branch_state}), tag {plan.tag} "
                 f"({plan.tag_state})" + (" — this commit was already released; finishing what is missing"
                                          if plan.reused else ""))
    if plan.bump_ignored:
        app.platform.warning(bump_ignored_text(opts, plan), title="stackci: cut-release")

    if opts.dry_run:
        steps = []
        if plan.branch_state != "exists":
            steps.append(f"{plan.branch_state} branch {plan.branch} at {sha[:12]}")
        if plan.tag_state == "create":
            steps.append(f"tag {plan.tag}")
        if github:
            steps.append(f"GitHub release {plan.tag}")
        if opts.dispatch:
            steps.append(f"dispatch {opts.dispatch} on {plan.branch}")
        logger.info("dry run: would %s", "; ".join(steps) if steps else "change nothing (all exists)")
        publish_results(app, plan, dry_run=True, opts=opts)
        return plan

    message = f"Release {plan.version}\n\n{plan.notes}"
    if plan.branch_state != "exists" or plan.tag_state == "create":
        pushing = [plan.branch] if plan.branch_state != "exists" else []
        pushing += [plan.tag] if plan.tag_state == "create" else []
        progress.say(f"pushing {', '.join(pushing)}")
        remote.publish(plan, message)
    if github:
        release, created = github.ensure_release(plan.tag, name=plan.tag, body=plan.notes,
                                                 prerelease=plan.version.is_prerelease)
        plan.release_url = release.get("html_url", "")
        progress.say(("created" if created else "found") + f" GitHub release {plan.release_url}")
    elif azure:
        plan.release_url = azure.web_url() + f"?version=GT{plan.tag}"
    if opts.dispatch and github:
        github.dispatch_workflow(opts.dispatch, plan.branch)
        progress.say(f"dispatched {opts.dispatch} on {plan.branch}")
    publish_results(app, plan, dry_run=False, dispatched=opts.dispatch, opts=opts)
    logger.info("released %s at %s on %s%s", plan.tag, sha[:12], plan.branch,
                f": {plan.release_url}" if plan.release_url else "")
    return plan


def bump_ignored_text(opts: Options, plan: Plan) -> str:
    what = f"--bump {opts.bump}" + (f" --prerelease {opts.prerelease}" if opts.prerelease else "")
    return (f"{plan.sha[:12]} is already released as {plan.tag}: {what} was not applied, and {plan.tag} is "
            f"reused (a re-run finishes that release); to release again, release a newer commit")


def publish_results(app: App, plan: Plan, *, dry_run: bool, dispatched: str | None = None,
                    opts: Options | None = None) -> None:
    for name, value in (("version", str(plan.version)), ("branch", plan.branch), ("tag", plan.tag),
                        ("sha", plan.sha), ("release-url", plan.release_url)):
        app.platform.set_output(name, value)
    title = f"### {'🧪 Dry run: would release' if dry_run else '🚀 Released'} {markdown.cell(plan.tag)}"
    rows = [["Version", markdown.code(plan.version)], ["Commit", markdown.code(plan.sha[:12])],
            ["Branch", markdown.code(plan.branch) + f" ({plan.branch_state})"],
            ["Tag", markdown.code(plan.tag) + f" ({plan.tag_state})"]]
    if plan.release_url:
        rows.append(["Release", f"[{markdown.cell(plan.tag)}]({plan.release_url})"])
    if dispatched:
        rows.append(["Deploy", f"dispatched {markdown.code(dispatched)} on {markdown.code(plan.branch)}"])
    if plan.bump_ignored and opts is not None:
        rows.append(["Note", markdown.cell(bump_ignored_text(opts, plan))])
    app.platform.append_summary("\n".join([title, "", markdown.table(["", ""], rows), "", "#### Release notes", "",
                                           plan.notes]))


@click.command("cut-release")
@click.option("--bump", type=click.Choice(BUMPS), envvar="STACKCI_BUMP",
              help="Bump the latest released version: major, minor or patch (the first release is 0.1.0).")
@click.option("--version", "version", envvar="STACKCI_VERSION", help="Release exactly this version (X.Y.Z).")
@click.option("--prerelease", envvar="STACKCI_PRERELEASE",
              help="Make a prerelease with this name: X.Y.Z-<name>.N, N counting up (e.g. rc).")
@click.option("--from", "from_ref", envvar="STACKCI_FROM",
              help="Branch, tag or commit to release [default: HEAD].")
@click.option("--branch-pattern", envvar="STACKCI_BRANCH_PATTERN",
              help="One release branch per version [default: release/v{version}].")
@click.option("--release-branch", envvar="STACKCI_RELEASE_BRANCH",
              help="Instead: fast-forward this one long-lived branch (MLOps Stacks style: release).")
@click.option("--tag-pattern", default="v{version}", show_default=True, envvar="STACKCI_TAG_PATTERN",
              help="Tag name; {version} is replaced. Existing tags of this shape give the latest version.")
@click.option("--notes", default="auto", show_default=True, envvar="STACKCI_NOTES",
              help="auto (from the commits since the previous release) or a Markdown file.")
@click.option("--dispatch", envvar="STACKCI_DISPATCH",
              help="GitHub: run this workflow (e.g. cd-prod.yml) on the release branch afterwards.")
@click.option("--remote", default="origin", show_default=True, envvar="STACKCI_REMOTE", help="git remote to push to.")
@click.option("--repo", type=click.Path(path_type=Path, file_okay=False), default=".", envvar="STACKCI_REPO",
              help="The project's checkout [default: the current directory].")
@click.option("--hosting", default="auto", show_default=True, envvar="STACKCI_HOSTING",
              help="auto, github (also creates the GitHub Release), azure (Azure Repos REST) or none (git only).")
@click.option("--token", envvar="STACKCI_TOKEN",
              help="API token [default: GITHUB_TOKEN on GitHub, SYSTEM_ACCESSTOKEN on Azure].")
@click.option("--dry-run", is_flag=True, envvar="STACKCI_DRY_RUN", help="Check everything and print what would happen.")
@click.pass_obj
def command(app: App, **kwargs) -> None:
    """Cut a release: version from the tags, release branch, tag, notes, GitHub Release.

    Outputs: version branch tag sha release-url. Nothing is pushed unless every check
    passes; a branch or tag that exists at the same commit is reused, never moved.
    """
    cut_release(app, Options(**{k: (v or None) if k in ("bump", "version", "prerelease", "from_ref",
                                                          "branch_pattern", "release_branch", "dispatch", "token")
                                else v for k, v in kwargs.items()}))
