"""``stackci rehearse [PROJECT]``: the project's whole CI/CD flow against the local workspace."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import click

from .. import log
from ..bundle.options import Line
from ..context import App
from ..errors import ConfigError, Interrupted, RunFailed

logger = log.get("rehearse")


@dataclass
class Facts:
    """What the rehearsal reads from the configuration before it starts, without resolving it."""

    name: str
    targets: list[str] | None = None       # None: the configuration cannot be read (``problem`` says why)
    jobs: set[str] = field(default_factory=set)   # job keys at the root or in any target
    problem: str | None = None


def bundle_facts(project: Path) -> Facts:
    """The bundle's name, targets and job keys; a configuration that cannot be read is the validate
    stage's to report."""
    from ..bundle.loader import check_bundle_name, find_root, read_tree, targets_node

    try:
        root, config = find_root(project)
        tree, _files = read_tree(root, config)
        name = check_bundle_name(tree, config)
        targets = targets_node(tree)
        scopes = [tree] + ([t for t in targets.value.values() if t.is_map]
                           if targets is not None and targets.is_map else [])
        jobs = set()
        for scope in scopes:
            resources = scope.get("resources")
            found = resources.get("jobs") if resources is not None and resources.is_map else None
            if found is not None and found.is_map:
                jobs |= set(found.value)
        names = list(targets.value) if targets is not None and targets.is_map else []
        return Facts(name, names, jobs)
    except ConfigError as exc:
        return Facts(project.name, problem=exc.one_line())


#: the targets a rehearsal deploys: (option, the stages that use it, the CI check that would fail)
TARGET_OPTIONS = (("test_target", "--test-target", "the integration test",
                   "the integration-test check of every pull request"),
                  ("staging_target", "--staging-target", "validate + plan and the staging deploy",
                   "the validate check of every pull request"),
                  ("prod_target", "--prod-target", "validate + plan, the prod deploy and the smoke run",
                   "the validate check of every pull request"))


def check_facts(opts, facts: Facts, given: set[str]) -> None:
    """Every target and job the rehearsal uses is in the bundle: else one line, exit 2, before
    anything is created (in CI the same names would fail the check named in the hint)."""
    if facts.targets is None:
        return
    known = ", ".join(facts.targets) or "none"
    for attr, option, stages, check in TARGET_OPTIONS:
        target = getattr(opts, attr)
        if target not in facts.targets:
            shown = f"{option} {target!r}" + ("" if attr in given else " (the default)")
            raise ConfigError(f"{shown} is not a target of the bundle (targets: {known})",
                              hint=f"pass {option} with the target your CI uses for {stages}; in CI, {check} "
                                   "would fail on it the same way")
    jobs = ", ".join(sorted(facts.jobs)) or "none"
    for key in opts.jobs:
        if key not in facts.jobs:
            raise ConfigError(f"--job {key!r} is not a job of the bundle (jobs: {jobs})",
                              hint="pass --job with the key (resources.jobs.<KEY>) of a job the integration test "
                                   "runs")
    if opts.smoke_job and opts.smoke_job not in facts.jobs:
        raise ConfigError(f"--smoke-job {opts.smoke_job!r} is not a job of the bundle (jobs: {jobs})",
                          hint="pass --smoke-job with the key of the job to run after the prod deploy, or an empty "
                               "value for no smoke run")


def split_words(values: tuple[str, ...]) -> list[str]:
    return [word for value in values for word in value.replace(",", " ").split()]


@click.command("rehearse")
@click.argument("project", required=False, type=click.Path(path_type=Path), envvar="STACKCI_PROJECT")
@click.option("--python", envvar="STACKCI_PYTHON",
              help="The project's interpreter for its tests and job tasks [default: a virtual environment with "
                   "the project's requirements, created once under --cache-dir and reused]. An interpreter outside "
                   "a virtual environment is the base of such a venv (nothing is installed into it); a venv's "
                   "interpreter is used as it is, with the requirements installed into it.")
@click.option("-r", "--requirements", multiple=True, envvar="STACKCI_REQUIREMENTS",
              help="Requirements file(s) of the project, relative to it [default: requirements.txt if present].")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False), envvar="STACKCI_CACHE_DIR",
              help="Where the project's virtual environments are kept [default: $XDG_CACHE_HOME/stackci or "
                   "~/.cache/stackci].")
@click.option("--test-target", default="test", show_default=True, envvar="STACKCI_TEST_TARGET",
              help="Target the integration test deploys its isolated copy to.")
@click.option("--staging-target", default="staging", show_default=True, envvar="STACKCI_STAGING_TARGET",
              help="Target deployed on a merge to main.")
@click.option("--prod-target", default="prod", show_default=True, envvar="STACKCI_PROD_TARGET",
              help="Target deployed from the release branch.")
@click.option("--job", "jobs", multiple=True, envvar="STACKCI_JOB", metavar="KEY",
              help="Bundle key of a job the integration test runs; repeatable [default: model_training_job].")
@click.option("--smoke-job", default="model_training_job", show_default=True, envvar="STACKCI_SMOKE_JOB",
              metavar="KEY", help="Bundle key of the job run on prod after its deploy; empty: no smoke run.")
@click.option("--var", "variables", multiple=True, type=Line(), envvar="STACKCI_VAR", metavar="NAME=VALUE",
              help="A bundle variable for every stage; repeatable. In the environment: one name=value per line.")
@click.option("--bump", type=click.Choice(["major", "minor", "patch"]), default="minor", show_default=True,
              envvar="STACKCI_BUMP", help="The release the rehearsal cuts.")
@click.option("--branch-pattern", envvar="STACKCI_BRANCH_PATTERN",
              help="Release branch per version, as cut-release [default: release/v{version}].")
@click.option("--release-branch", envvar="STACKCI_RELEASE_BRANCH",
              help="Instead: one long-lived release branch, fast-forwarded (MLOps Stacks style: release).")
@click.option("--timeout", default="30m", show_default=True, envvar="STACKCI_TIMEOUT",
              help="Give up on a job run after this long (integration test, smoke run).")
@click.option("--work-dir", type=click.Path(path_type=Path, file_okay=False), envvar="STACKCI_WORK_DIR",
              help="A new or empty folder for the rehearsal's repositories and workspace [default: a temporary one].")
@click.option("--keep", is_flag=True, envvar="STACKCI_KEEP",
              help="Leave the workspace data, the bare origin and the checkouts, and say how to serve them again.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              envvar="STACKCI_OUTPUT", help="json: also print the report as JSON on stdout.")
@click.pass_context
def command(ctx: click.Context, project, python, requirements, cache_dir, test_target, staging_target, prod_target, jobs,
            smoke_job, variables, bump, branch_pattern, release_branch, timeout, work_dir, keep, output) -> None:
    """Rehearse the project's whole CI/CD flow on this machine: no credentials, no network.

    Copies PROJECT [default: examples/project of this stackci checkout] into a throwaway git
    repository with a bare origin, starts the local workspace, and runs each stage with the
    block CI runs: unit tests, validate + plan (staging, prod), integration test (isolated
    copy on the test target), deploy staging (after the merge to main), cut release (branch
    and tag pushed to origin), deploy prod (from the release branch) and a smoke run.
    Ends with a table of every stage. Exit 1 naming the stage that failed; later stages
    are reported as not run. Outputs: result failed-stage stages workspace-url work-dir.
    """
    from ..dbx import parse_duration
    from ..unit_tests import resolve_python, resolve_requirements
    from . import flow, sandbox as sb

    app: App = ctx.obj
    given = {name for name in ("test_target", "staging_target", "prod_target")
             if ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)}

    # ---- preconditions: nothing is created before all of them hold
    root = sb.resolve_project(project, Path.cwd())
    if python:
        resolve_python(python)
    reqs = resolve_requirements(requirements, root) if requirements else \
        ([root / "requirements.txt"] if (root / "requirements.txt").is_file() else [])
    parse_duration(timeout)
    from ..bundle.loader import parse_var_options
    parse_var_options(list(variables))
    if branch_pattern and release_branch:
        raise ConfigError("give either --branch-pattern or --release-branch, not both",
                          hint="--branch-pattern makes one branch per version; --release-branch moves one branch")
    if branch_pattern and "{version}" not in branch_pattern:
        raise ConfigError(f"--branch-pattern {branch_pattern!r} has no {{version}}",
                          hint="e.g. release/v{version}")
    keys = split_words(jobs) or ["model_training_job"]
    opts = flow.Options(project=root, python=python, requirements=reqs,
                        cache_dir=(cache_dir or sb.default_cache_dir(app.environ)).absolute(), work_dir=work_dir,
                        test_target=test_target, staging_target=staging_target, prod_target=prod_target,
                        jobs=keys, smoke_job=(smoke_job or "").strip() or None, variables=list(variables),
                        bump=bump, branch_pattern=branch_pattern, release_branch=release_branch, timeout=timeout,
                        keep=keep)
    facts = bundle_facts(root)
    check_facts(opts, facts, given)
    name = facts.name
    box = sb.Sandbox.make(root, work_dir)

    logger.info("rehearsing bundle %s from %s in %s", name, root, box.base)
    if facts.problem:
        app.platform.warning(f"the bundle configuration cannot be read ({facts.problem}): the validate stage will "
                             "stop here, as the pull request's validate check would in CI", title="stackci: rehearse")
    rehearsal = flow.Rehearsal(app, opts, box, name)
    failed = None
    interrupted = False
    stopping = None
    try:
        with sb.process_environ(sb.scrubbed_environ(app.environ, box)):
            try:
                failed = rehearsal.run()
            except KeyboardInterrupt:
                interrupted = True
                failed = next((s for s in rehearsal.stages if s.result == flow.INTERRUPTED), None)
            except BaseException:
                # outside any stage: the report must not say passed (the error itself follows)
                failed = next((s for s in rehearsal.stages if s.result != flow.PASSED), rehearsal.stages[-1])
                raise
            finally:
                # the workspace's serve loop takes up to a tenth of a second to notice a stop: the
                # report is printed and the checkouts are removed meanwhile
                stopping = threading.Thread(target=rehearsal.stop, name="stackci-rehearse-stop")
                stopping.start()
    finally:
        url = rehearsal.workspace.url if rehearsal.workspace is not None else ""
        report(app, rehearsal, name, failed, interrupted, url, output)
        if keep:
            logger.info("kept %s: the workspace data in %s, the bare origin %s and the CI checkouts", box.base,
                        box.data_dir, box.origin)
            if rehearsal.workspace is not None:
                logger.info("serve the workspace again (the links above work again on the same port):\n"
                            "  stackci workspace serve --data-dir %s --port %s", box.data_dir,
                            rehearsal.workspace.port)
            if stopping is not None:
                stopping.join()
        else:
            box.remove(until=stopping.join if stopping is not None else None)
    if interrupted:
        raise Interrupted("the rehearsal was interrupted" + (f" during {failed.title}" if failed else ""))
    if failed is not None:
        later = [s.title for s in rehearsal.stages[rehearsal.stages.index(failed) + 1:]]
        number = rehearsal.stages.index(failed)
        if failed.engine_limit:
            raise ConfigError(f"cannot rehearse this bundle: stackci's deploy engine does not deploy "
                              f"{failed.engine_limit}, and a rehearsal deploys with that engine only (it has no "
                              f"--engine cli)", hint="rehearse a bundle without them; in CI such a bundle deploys "
                                                     "with the blocks' engine: cli (STACKCI_ENGINE=cli)")
        if failed.local_only:
            hint = f"{failed.local_only}, so this says nothing about {failed.in_ci} in CI"
        else:
            hint = f"in CI, {failed.in_ci} would fail the same way" + (
                f" and stop the flow before {', '.join(later)}" if later else "")
        raise RunFailed(f"rehearsal failed at stage {number}/{len(rehearsal.stages) - 1} ({failed.title}): "
                        f"{failed.message}", hint=hint)


def redacted(value, redact):
    """``value`` (JSON-like) with ``redact`` applied to every string in it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redacted(v, redact) for v in value]
    if isinstance(value, dict):
        return {k: redacted(v, redact) for k, v in value.items()}
    return value


def report(app: App, rehearsal, name: str, failed, interrupted: bool, url: str, output: str) -> None:
    from . import flow

    stages = rehearsal.stages
    result = "interrupted" if interrupted else "failed" if failed is not None else "passed"
    title = f"Rehearsal of {name}: {result}" + (f" at {failed.title}" if failed is not None else "")
    logger.info("")
    logger.info("%s (%s)", title, f"local workspace {url}" if url else "no workspace")
    for line in flow.table_text(stages):
        logger.info("  %s", line)
    p = app.platform
    p.set_output("result", result)
    p.set_output("failed-stage", failed.key if failed is not None else "")
    # stage messages and details quote the blocks' errors: redacted like everything the log shows
    p.set_output("stages", json.dumps(redacted([s.as_json() for s in stages], p.redact), sort_keys=True))
    p.set_output("workspace-url", url)
    p.set_output("work-dir", str(rehearsal.box.base) if rehearsal.opts.keep else "")
    icon = "✅" if result == "passed" else "❌"
    p.append_summary(flow.summary_markdown(f"### {icon} {title}", stages,
                                           [f"Local workspace: {url}"] if url else []))
    if output == "json":
        doc = {"bundle": name, "project": str(rehearsal.opts.project), "result": result,
               "failed_stage": failed.key if failed is not None else None, "workspace_url": url,
               "work_dir": str(rehearsal.box.base) if rehearsal.opts.keep else None,
               "stages": [s.as_json() for s in stages]}
        click.echo(p.neutralise(json.dumps(redacted(doc, p.redact), indent=2)))
