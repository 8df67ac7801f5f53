"""``stackci plan``, ``stackci deploy`` and ``stackci destroy`` for one bundle target.

Everything that can be wrong with the input is checked before the workspace is
changed: the bundle is loaded and resolved, resources are put in dependency order
(a cycle is an error), unsupported resource kinds are refused, and the production
guard (``--require-branch``) runs. Only then is the lock taken.

The workspace is ``--host`` when given, else the target's ``workspace.host``; a
``DATABRICKS_HOST`` that names another workspace is refused rather than silently
deploying somewhere else. Credentials are databricks-sdk's (token, OAuth, OIDC, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click

from .. import log
from ..bundle.options import Line
from ..context import App
from ..errors import ConfigError

logger = log.get("deploy")


@dataclass
class Loaded:
    bundle: object
    client: object
    host: str
    record: dict
    ref: object


def _norm(host: str | None) -> str:
    from ..bundle import normalise_host
    return normalise_host(host) if host else ""


def _current_user(client, host: str):
    from databricks.sdk.errors import DatabricksError

    from ..bundle import CurrentUser, UserUnknown
    try:
        me = client.current_user.me()
    except DatabricksError as exc:
        raise UserUnknown(f"the workspace {host} refused to say who the current user is "
                          f"({exc.error_code or type(exc).__name__})",
                          hint="check the credentials, or pass --user (STACKCI_CURRENT_USER)") from None
    if not me.user_name:
        raise UserUnknown(f"the workspace {host} returned no userName for the current user",
                          hint="pass --user (STACKCI_CURRENT_USER)")
    extra = {k: v for k, v in (("id", me.id), ("active", me.active)) if v is not None}
    return CurrentUser(me.user_name, me.display_name, extra, source="workspace")


def load(app: App, *, target, variables, project: Path, user, host_option, profile,
         require_branch=(), command: str = "deploy", overrides: dict | None = None,
         session: dict | None = None) -> Loaded:
    """Load and check everything; connect to the workspace (read-only so far).

    ``session`` (a dict) shares workspace clients and current users between several loads
    (``plan`` of several targets asks each workspace who the user is once)."""
    from ..bundle import CurrentUser, load_bundle
    from ..bundle.cli import display_path, show_warnings
    from ..dbx import check_host, workspace_client
    from . import guard, support
    from .resources import apply_order, desired_resources

    session = {} if session is None else session
    clients: dict = session.setdefault("clients", {})
    users: dict = session.setdefault("users", {})

    if host_option:
        host_option = check_host(host_option, "--host")     # bad input before anything else

    def connect(bundle_host: str | None):
        env_host = app.environ.get("DATABRICKS_HOST")
        source = "--host"
        if host_option:
            host = _norm(host_option)
        elif bundle_host:
            host = _norm(bundle_host)
            source = f"workspace.host of target {target or '(default)'}"
            if env_host and _norm(env_host) != host and not profile:
                raise ConfigError(f"DATABRICKS_HOST is {_norm(env_host)} but target {target or '(default)'} deploys "
                                  f"to {host}", hint="pass --host (STACKCI_HOST) to deploy to another workspace on "
                                                     "purpose, or unset DATABRICKS_HOST")
        elif env_host or profile:
            host = _norm(env_host) if env_host else ""
            source = "DATABRICKS_HOST"
        else:
            raise ConfigError("no workspace to deploy to: the target sets no workspace.host",
                              hint="set workspace.host in the target, or pass --host (STACKCI_HOST)")
        if host not in clients:
            clients[host] = workspace_client(host or None, profile, app.platform, source=source,
                                             environ=app.environ)
        return clients[host], clients[host].config.host

    def user_source(bundle_host):
        client, host = connect(bundle_host)
        if host not in users:
            users[host] = _current_user(client, host)
        return users[host]

    source = CurrentUser(user.strip(), source="option") if user and user.strip() else user_source
    try:
        bundle = load_bundle(project, target, variables, env=app.environ, current_user=source,
                             overrides=overrides)
        show_warnings(app, bundle)
        support.check(bundle)
        apply_order(desired_resources(bundle))
    except ConfigError as exc:
        exc.file = display_path(exc.file, app)
        raise
    git_info = (bundle.settings.get("bundle") or {}).get("git") or {}
    ref = guard.current_ref(app.environ, git_info)
    if require_branch:
        guard.require_branch(list(require_branch), ref, bundle.target)
    client, host = connect(bundle.host)
    record = guard.deployment_record(bundle, app.environ, ref)
    record["command"] = command
    return Loaded(bundle, client, host, record, ref)


def _engine(app: App, loaded: Loaded, parallel: int, what: str):
    from .engine import Engine

    from ..bundle.cli import display_path

    def warn(message: str, file, line) -> None:
        app.platform.warning(message, file=display_path(file, app), line=line, title="stackci: deploy")

    progress = log.Progress(logger, f"{what} {loaded.bundle.target}", clock=app.clock)
    return Engine(loaded.client, loaded.bundle, host=loaded.host, record=loaded.record, parallel=parallel,
                  progress=progress, warn=warn)


#: step outputs of a plan: output name -> key of Plan.counts (summed over the targets)
PLAN_OUTPUTS = (("to-create", "create"), ("to-update", "update"), ("to-replace", "replace"),
                ("to-delete", "delete"), ("unchanged", "unchanged"), ("files-to-upload", "files_upload"),
                ("files-to-delete", "files_delete"))


def publish_plan(app: App, plan, output: str) -> None:
    """One target's plan: its outputs, its summary, and the plan as text, JSON or Markdown."""
    _publish(app, [plan], output)


def _publish(app: App, plans: list, output: str) -> None:
    p = app.platform
    for name, key in PLAN_OUTPUTS:
        p.set_output(name, sum(plan.counts[key] for plan in plans))
    p.set_output("has-changes", "true" if any(plan.has_changes for plan in plans) else "false")
    for plan in plans:
        p.append_summary(plan.markdown())
    # names and paths come from the bundle's YAML: printed inert, like every other text from outside
    if output == "json":
        click.echo(p.neutralise(plans[0].json_text() if len(plans) == 1 else
                                json.dumps({"plans": {plan.target: plan.to_json() for plan in plans}}, indent=2,
                                           default=str)))
    elif output == "markdown":
        click.echo(p.neutralise("\n".join(plan.markdown() for plan in plans)), nl=False)
    else:
        for plan in plans:
            for line in plan.text().splitlines():
                logger.info("%s", line)


# --------------------------------------------------------------------------- options
TARGET_HELP = "Bundle target [default: the only target, else the one with 'default: true']."
TARGETS_HELP = ("Bundle target; repeatable, each is planned [default: the only target, else the one with "
                "'default: true']. In the environment: several separated by spaces or newlines.")


engine_option = click.option(
    "--engine", type=click.Choice(["stackci", "cli"]), default="stackci", show_default=True, envvar="STACKCI_ENGINE",
    help="stackci: stackci's own engine. cli: run the official 'databricks bundle' command instead (Databricks CLI "
         "0.218+ on PATH), for bundles with resources or keys stackci does not deploy.")


def project_options(target_help: str = TARGET_HELP, several_targets: bool = False) -> list:
    """The options that name a bundle, its target and its workspace (deploy, plan, destroy,
    integration-test, ...)."""
    target = click.option("-t", "--target", "targets", multiple=True, envvar="STACKCI_TARGET", help=TARGETS_HELP) \
        if several_targets else click.option("-t", "--target", envvar="STACKCI_TARGET", help=target_help)
    return [
        target,
        click.option("--var", "variables", multiple=True, type=Line(), envvar="STACKCI_VAR", metavar="NAME=VALUE",
                     help="Set a bundle variable (highest precedence); repeatable. In the environment: one "
                          "name=value per line (values may contain spaces)."),
        click.option("-p", "--project", type=click.Path(path_type=Path), default=".", show_default=True,
                     envvar="STACKCI_PROJECT", help="Folder of the bundle (holding databricks.yml)."),
        click.option("--user", "--current-user", "user", envvar="STACKCI_CURRENT_USER", metavar="USERNAME",
                     help="The deploying identity's userName [default: asked from the workspace]."),
        click.option("--host", "host_option", envvar="STACKCI_HOST",
                     help="Workspace URL [default: the target's workspace.host]."),
        click.option("--profile", envvar="STACKCI_PROFILE", help="~/.databrickscfg profile to authenticate with."),
    ]


def bundle_options(fn=None, *, several_targets: bool = False):
    if fn is None:
        return lambda f: bundle_options(f, several_targets=several_targets)
    options = [
        *project_options(several_targets=several_targets),
        click.option("--parallel", type=click.IntRange(1, 64), default=8, show_default=True,
                     envvar="STACKCI_PARALLEL", help="Workspace requests in flight at once (file uploads, lookups)."),
        engine_option,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


PLAN_VERSION_NEEDED = (0, 267, 0)


def unique_targets(targets) -> list:
    """The requested targets in order, each once; none given → [None] (the default target)."""
    out: list = []
    for t in targets or ():
        for name in str(t).split():
            if name not in out:
                out.append(name)
    return out or [None]


def publish_plans(app: App, plans: list, output: str) -> None:
    """Outputs summed over the targets plus ``plans`` (target → counts), the summary, the output."""
    _publish(app, plans, output)
    app.platform.set_output("plans", json.dumps({plan.target: plan.counts for plan in plans}, sort_keys=True))


@click.command("plan")
@bundle_options(several_targets=True)
@click.option("-o", "--output", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
              envvar="STACKCI_OUTPUT", help="text: on stderr; json or markdown: on stdout.")
@click.option("--comment", is_flag=True, envvar="STACKCI_COMMENT",
              help="Post the plan as one pull-request comment (GitHub or Azure Repos) with a section per target, "
                   "updated in place: a plan of some targets replaces only their sections, so jobs that plan "
                   "different targets share the comment. Outside a pull request: a notice, nothing posted.")
@click.option("--github-token", envvar="STACKCI_GITHUB_TOKEN", metavar="TOKEN",
              help="Token for the GitHub comment [default: GITHUB_TOKEN]; needs pull-requests: write.")
@click.pass_obj
def plan_command(app: App, targets, variables, project, user, host_option, profile, parallel, engine, output,
                 comment, github_token) -> None:
    """Show what a deploy of each target would create, update, delete and upload.

    Compares the resolved bundle with the deployment state in the workspace (read-only;
    no lock). Every target is loaded and checked before any plan is made. Outputs (summed
    over the targets): to-create to-update to-replace to-delete unchanged files-to-upload files-to-delete
    has-changes; plans (JSON: target → counts); comment-url. The step summary gets each plan as
    a Markdown table.
    """
    from . import comment as pr_comment

    if engine == "cli":
        from .databricks_cli import Delegate, arguments, check_flags

        check_flags("plan", **{"--comment": comment, "--output markdown": output == "markdown",
                               "--user": (user or "").strip()})
        delegate = Delegate(app, "plan", project, host_option)
        delegate.require(PLAN_VERSION_NEEDED, "stackci plan --engine cli (databricks bundle plan)")
        chosen = unique_targets(targets)
        documents = {}
        for t in chosen:
            documents[t] = delegate.run(arguments("plan", target=t, variables=variables, profile=profile,
                                                  output=output), capture_stdout=output == "json", fail_as_config=True)
        if output == "json":
            if len(chosen) == 1:
                text = documents[chosen[0]]
            else:   # the same shape as stackci's engine gives for several targets
                try:
                    text = json.dumps({"plans": {t: json.loads(doc) for t, doc in documents.items()}}, indent=2)
                except ValueError:
                    text = "\n".join(documents.values())
            click.echo(app.platform.neutralise(text))
        return

    where = pr_comment.find_pull_request(app, github_token) if comment else None
    session: dict = {}
    loaded = [load(app, target=t, variables=variables, project=project, user=user, host_option=host_option,
                   profile=profile, command="plan", session=session) for t in unique_targets(targets)]
    plans = []
    for item in loaded:
        engine = _engine(app, item, parallel, "plan")
        plans.append(engine.plan(engine.read_state()))
    publish_plans(app, plans, output)
    url = ""
    if where is not None:
        url = pr_comment.post(app, where, plans).url
    app.platform.set_output("comment-url", url)


def _summary(title: str, outcome, host: str) -> str:
    from .. import markdown as md

    parts = [title, "", md.cell(outcome.line() + "; " + outcome.files_line()), ""]
    rows = [[md.code(address), md.cell(name or ""), action,
             f"<a href=\"{md.cell(url)}\">{md.cell(url.rsplit('/', 1)[-1])}</a>" if url else ""]
            for address, name, action, url in outcome.rows]
    if rows:
        parts.append(md.table(["Resource", "Name", "Action", "Link"], rows))
    return "\n".join(parts) + "\n"


@click.command("deploy")
@bundle_options
@click.option("--force-lock", is_flag=True, envvar="STACKCI_FORCE_LOCK",
              help="Take the deployment lock even if another deploy holds it (e.g. one that was killed).")
@click.option("--fail-on-active-runs", is_flag=True, envvar="STACKCI_FAIL_ON_ACTIVE_RUNS",
              help="Refuse to deploy when a job that would change or be deleted has active runs.")
@click.option("--require-branch", "require_branch", multiple=True, envvar="STACKCI_REQUIRE_BRANCH",
              metavar="PATTERN", help="Only deploy from a branch matching this pattern (fnmatch, e.g. 'release/*'); "
                                      "repeatable. Tags, pull requests and detached checkouts are refused.")
@click.option("--allow-replace", is_flag=True, envvar="STACKCI_ALLOW_REPLACE",
              help="Let the deploy replace a registered model whose catalog or schema changed: Unity Catalog cannot "
                   "move a model, so the old one is deleted with its versions, aliases and grants.")
@click.option("--dry-run", is_flag=True, envvar="STACKCI_DRY_RUN", help="Print the plan and change nothing.")
@click.pass_obj
def deploy_command(app: App, target, variables, project, user, host_option, profile, parallel, engine, force_lock,
                   fail_on_active_runs, require_branch, allow_replace, dry_run) -> None:
    """Deploy the bundle to a target: files, then experiments, models and jobs.

    Takes the deployment lock, uploads changed files, creates / resets / deletes resources in
    dependency order and records every step in the state, so a deploy that is interrupted
    converges when run again. Prints 'N created, N changed, N deleted, N unchanged'.
    Outputs: jobs (JSON: key → id, url) created changed replaced deleted unchanged files-uploaded
    files-deleted. A registered model whose catalog or schema changed is replaced (deleted with its
    versions, then created) only with --allow-replace.
    """
    from .engine import run_locked

    if engine == "cli":
        from .databricks_cli import check_flags

        check_flags("deploy", **{"--allow-replace": allow_replace, "--user": (user or "").strip()})
        _delegate_deploy(app, target, variables, project, host_option, profile, force_lock, fail_on_active_runs,
                         require_branch, dry_run)
        return
    loaded = load(app, target=target, variables=variables, project=project, user=user, host_option=host_option,
                  profile=profile, require_branch=require_branch, command="deploy")
    engine = _engine(app, loaded, parallel, "deploy")
    engine.allow_replace = allow_replace
    bundle = loaded.bundle
    if dry_run:
        plan = engine.plan(engine.read_state())
        publish_plan(app, plan, "text")
        _refuse_replace(plan, allow_replace, dry_run=True)
        engine.say("dry run: nothing was changed")
        return

    def work():
        state = engine.read_state()
        plan = engine.plan(state)
        engine.say(f"plan: {plan.headline()}")
        for change in plan.resources:
            if change.action != "unchanged":
                engine.say(f"  {change.action} {change.address} ({change.name or ''}): {change.reason}")
        _refuse_replace(plan, allow_replace)
        if fail_on_active_runs:
            engine.check_active_runs(plan)
        return engine.deploy(state, plan)

    outcome = run_locked(engine, "deploy", force_lock, work)
    engine.say(outcome.files_line())
    engine.say(outcome.line())
    p = app.platform
    p.set_output("jobs", json.dumps({k: {"id": v["id"], "url": v["url"]} for k, v in sorted(outcome.jobs.items())},
                                    sort_keys=True))
    p.set_output("created", len(outcome.created))
    p.set_output("changed", len(outcome.changed))
    p.set_output("replaced", len(outcome.replaced))
    p.set_output("deleted", len(outcome.deleted))
    p.set_output("unchanged", len(outcome.unchanged))
    p.set_output("files-uploaded", outcome.uploaded)
    p.set_output("files-deleted", outcome.files_deleted)
    from .. import markdown as md
    p.append_summary(_summary(f"### ✅ Deployed {md.code(bundle.name)} to {md.code(bundle.target)}", outcome,
                              loaded.host))


def _refuse_replace(plan, allow_replace: bool, dry_run: bool = False) -> None:
    """A replace deletes a registered model with its versions: only with --allow-replace."""
    replaces = [c for c in plan.resources if c.action == "replace"]
    if not replaces or allow_replace:
        return
    what = "; ".join(f"{c.address}: {c.reason}" for c in replaces)
    if dry_run:
        logger.warning("a deploy would refuse this plan without --allow-replace: %s", what)
        return
    raise ConfigError(f"refusing to deploy target {plan.target}: {what}",
                      hint="deploy with --allow-replace (STACKCI_ALLOW_REPLACE=true) to replace it, or keep the "
                           "model's catalog and schema; nothing was changed")


def _delegate_deploy(app: App, target, variables, project, host_option, profile, force_lock, fail_on_active_runs,
                     require_branch, dry_run) -> None:
    """``deploy --engine cli``: the production guard first (stackci's), then ``databricks bundle deploy``
    (or ``bundle plan`` for --dry-run)."""
    from ..bundle import git as gitinfo
    from . import guard
    from .databricks_cli import Delegate, arguments

    if require_branch:
        git_info = gitinfo.info(Path(project).resolve())
        guard.require_branch(list(require_branch), guard.current_ref(app.environ, git_info), target or "(default)")
    delegate = Delegate(app, "deploy", project, host_option)
    if dry_run:
        delegate.require(PLAN_VERSION_NEEDED, "stackci deploy --dry-run --engine cli (databricks bundle plan)")
        delegate.run(arguments("plan", target=target, variables=variables, profile=profile), fail_as_config=True)
        logger.info("dry run: nothing was changed")
        return
    delegate.run(arguments("deploy", target=target, variables=variables, profile=profile, force_lock=force_lock,
                           fail_on_active_runs=fail_on_active_runs))


def target_mode(project: Path, target: str | None) -> tuple[str, str | None]:
    """The target ``databricks bundle`` would pick and its ``mode`` (read from the YAML and its includes
    only: no variables, no workspace), for the production guard of ``destroy --engine cli``."""
    from ..bundle.loader import find_root, read_tree, select_target
    from ..bundle.nodes import Location

    root, config = find_root(Path(project))
    tree, _files = read_tree(root.resolve(), config.resolve())
    name, node, _all = select_target(tree, target, Location(str(config), 1))
    mode = node.get("mode") if node is not None and node.is_map else None
    return name, mode.value if mode is not None and isinstance(mode.value, str) else None


def confirm_destroy(app: App, target: str, mode: str | None, auto_approve: bool, what: str) -> None:
    """A ``mode: production`` target is only destroyed with --auto-approve, or when the person at the
    terminal types the target's name (never asked in CI: there it is a one-line error, exit 2)."""
    import sys

    if mode != "production" or auto_approve:
        return
    interactive = app.platform.name == "local" and sys.stdin is not None and sys.stdin.isatty()
    if not interactive:
        raise ConfigError(f"refusing to destroy target {target!r}: it is 'mode: production' ({what})",
                          hint="pass --auto-approve (STACKCI_AUTO_APPROVE=true) to destroy it; --dry-run lists "
                               "what would be removed")
    logger.warning("target %r is 'mode: production': destroy removes %s", target, what)
    answer = click.prompt(f"Type the target name ({target}) to destroy it", default="", show_default=False, err=True)
    if answer.strip() != target:
        raise ConfigError(f"not destroying target {target!r}: the answer was not its name",
                          hint="type the target name exactly, or pass --auto-approve (STACKCI_AUTO_APPROVE=true)")


@click.command("destroy")
@bundle_options
@click.option("--force-lock", is_flag=True, envvar="STACKCI_FORCE_LOCK",
              help="Take the deployment lock even if another deploy holds it.")
@click.option("--auto-approve", is_flag=True, envvar="STACKCI_AUTO_APPROVE",
              help="Destroy a 'mode: production' target without asking (otherwise: a prompt on a terminal, "
                   "a refusal in CI).")
@click.option("--dry-run", is_flag=True, envvar="STACKCI_DRY_RUN", help="List what would be removed; change nothing.")
@click.pass_obj
def destroy_command(app: App, target, variables, project, user, host_option, profile, parallel, engine, force_lock,
                    auto_approve, dry_run) -> None:
    """Remove every job, experiment, registered model and file the target's state owns, then the state.

    Objects that stackci did not create are never touched. A 'mode: production' target needs
    --auto-approve (or the target's name typed at the prompt of a terminal). Outputs: deleted
    files-deleted.
    """
    from .engine import run_locked

    if engine == "cli":
        from .databricks_cli import Delegate, arguments, check_flags

        check_flags("destroy", **{"--dry-run": dry_run, "--user": (user or "").strip()})
        confirm_destroy(app, *target_mode(project, target), auto_approve,
                        "everything 'databricks bundle destroy' removes")
        Delegate(app, "destroy", project, host_option).run(
            arguments("destroy", target=target, variables=variables, profile=profile, force_lock=force_lock))
        return
    loaded = load(app, target=target, variables=variables, project=project, user=user, host_option=host_option,
                  profile=profile, command="destroy")
    engine = _engine(app, loaded, parallel, "destroy")
    bundle = loaded.bundle
    if dry_run or (bundle.mode == "production" and not auto_approve):
        state = engine.read_state()
        owned = state.owned()
        width = max((len(f"{kind}.{key}") for kind, key, _ in owned), default=0)
        for kind, key, entry in owned:
            logger.info("  - %s  %s (%s)", f"{kind}.{key}".ljust(width), entry.get("name") or "", entry.get("id"))
        what = f"{len(owned)} resources and {len(state.files)} files from {bundle.root_path}"
        if not dry_run:
            confirm_destroy(app, bundle.target, bundle.mode, auto_approve, what)
        else:
            logger.info("%s would be removed; dry run: nothing was changed", what[0].upper() + what[1:])
            app.platform.set_output("deleted", 0)
            app.platform.set_output("files-deleted", 0)
            return

    def work():
        state = engine.read_state()
        if not state.exists:
            engine.say(f"nothing to destroy: no deployment state at {engine.store.path}")
            return None
        return engine.destroy(state)

    outcome = run_locked(engine, "destroy", force_lock, work)
    if outcome is not None:
        engine.remove_folders()
        engine.say(f"{len(outcome.deleted)} deleted; files: {outcome.files_deleted} deleted")
    deleted = len(outcome.deleted) if outcome else 0
    app.platform.set_output("deleted", deleted)
    app.platform.set_output("files-deleted", outcome.files_deleted if outcome else 0)
    from .. import markdown as md
    app.platform.append_summary(f"### 🗑️ Destroyed {md.code(bundle.name)} in {md.code(bundle.target)}\n\n"
                                f"{deleted} resources and {outcome.files_deleted if outcome else 0} files removed.\n")
