"""``stackci integration-test`` and ``stackci gc``: run a bundle's jobs in an isolated copy
of a target, report them task by task, and always tear the copy down.

The copy (see :mod:`stackci.runs.isolation`) is deployed with the deploy engine, its jobs
are started with idempotency tokens derived from the CI ids (a retried request or a
restarted step never launches a second run), waited for with per-task progress, and
reported as a step summary, annotations and one JUnit test case per task. Teardown runs
after success, failure and interruption alike (SIGTERM arrives as KeyboardInterrupt:
active runs are cancelled first), unless ``--keep``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import click

from .. import log
from ..context import App
from ..errors import ConfigError, RunFailed
from .cli import FAILURE_TEXT, Line, ci_run_key, default_junit_path, parse_params
from .isolation import TAG_COPY, TAG_CREATED, copy_root, isolation_id, overrides

logger = log.get("runs")

SEVERITY = ["infrastructure", "timedout", "failed", "canceled", "skipped", "success"]


def _pause_everything(bundle) -> None:
    """Schedules, file-arrival/periodic triggers and continuous mode of every job: PAUSED."""
    for res in (bundle.resources.get("jobs") or {}).values():
        for key in ("schedule", "trigger", "continuous"):
            section = res.settings.get(key)
            if isinstance(section, dict):
                section["pause_status"] = "PAUSED"


def run_token(environ, ident: str, key: str, job_id: int, attempt: int) -> str:
    """Deterministic per CI attempt, copy, job and retry: the same step re-run reuses its run."""
    parts = [ci_run_key(environ) or "local", ident, key, str(job_id), str(attempt)]
    return "stackci-it-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]


def _load_copy(app: App, opts: dict, ident: str, now: float):
    """The target, then the same target as an isolated copy (the copy's root is derived from
    the target's). Everything is checked before anything is created."""
    from ..deploy.cli import load

    common = dict(target=opts["target"], variables=opts["variables"], project=opts["project"],
                  host_option=opts["host_option"], profile=opts["profile"])
    base = load(app, user=opts["user"], command="integration-test", **common)
    jobs = (base.bundle.resources.get("jobs") or {})
    unknown = [k for k in opts["jobs"] if k not in jobs]
    if unknown:
        raise ConfigError(f"unknown job key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in target "
                          f"{base.bundle.target}", hint=f"the bundle's jobs are: {', '.join(sorted(jobs)) or 'none'}")
    user = opts["user"] or (base.bundle.current_user.user_name if base.bundle.current_user else None)
    copy = load(app, user=user, command="integration-test",
                overrides=overrides(base.bundle.root_path, ident, now), **common)
    _pause_everything(copy.bundle)
    return base, copy


def _run_one(app: App, client, ident: str, key: str, job: dict, params: dict, deadline: float | None,
             retry_infra: int, stop: threading.Event, waiter):
    """Start the job (retrying infrastructure failures), wait, return (report, wait result)."""
    from . import report

    attempt = 0
    while True:
        token = run_token(app.environ, ident, key, job["id"], attempt)
        run_id = client.jobs.run_now(job["id"], job_parameters=params or None, idempotency_token=token).run_id
        remaining = None if deadline is None else max(0.0, deadline - app.clock())
        result = waiter.wait(run_id, timeout=remaining, stop=stop, label=key)
        if result.outcome == "infrastructure" and attempt < retry_infra:
            attempt += 1
            logger.warning("%s: infrastructure failure; re-running (%d of %d)", key, attempt, retry_infra)
            continue
        return report.collect(client, result.run, f"{key} ({job.get('name') or job['id']})"), result


def _run_jobs(app: App, engine, outcome, opts, ident: str) -> list:
    from .wait import Waiter

    client = engine.client
    params = parse_params(opts["job_params"])
    deadline = app.clock() + opts["timeout"] if opts["timeout"] else None
    waiter = Waiter(client, clock=app.clock, cancel_grace=1.5)
    stop = threading.Event()
    keys = list(dict.fromkeys(opts["jobs"]))
    results: dict[str, tuple] = {}
    if not opts["parallel"]:
        for key in keys:
            results[key] = _run_one(app, client, ident, key, outcome.jobs[key], params, deadline,
                                    opts["retry_infra"], stop, waiter)
        return [results[k] for k in keys]

    errors: list[BaseException] = []

    def worker(key):
        try:
            results[key] = _run_one(app, client, ident, key, outcome.jobs[key], params, deadline,
                                    opts["retry_infra"], stop, waiter)
        except BaseException as exc:  # KeyboardInterrupt from stop, or an API error
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=worker, args=(k,), name=f"job-{k}") for k in keys]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.2)
    except KeyboardInterrupt:
        stop.set()                      # every waiter cancels its run, then we tear down
        for t in threads:
            t.join(5)
        raise
    real = [e for e in errors if not isinstance(e, KeyboardInterrupt)]
    if real:
        raise real[0]
    return [results[k] for k in keys]


def _teardown(app: App, engine) -> None:
    from ..deploy.engine import run_locked

    started = app.clock()

    def work():
        state = engine.read_state()
        return engine.destroy(state) if state.exists else None

    outcome = run_locked(engine, "destroy", True, work)
    engine.remove_folders()
    removed = len(outcome.deleted) if outcome else 0
    logger.info("[%6.1fs] tore down the isolated copy (%d resources, %d files)", app.clock() - started, removed,
                outcome.files_deleted if outcome else 0)


def integration_test(app: App, **opts) -> str:
    from . import report
    from ..deploy.cli import _engine
    from ..deploy.engine import run_locked

    ident = isolation_id(app.environ, opts["isolation_id"])
    now = time.time()
    base, copy = _load_copy(app, opts, ident, now)
    engine = _engine(app, copy, opts["workspace_parallel"], f"integration-test {ident}")
    engine.say(f"isolated copy {ident} of target {copy.bundle.target} at {copy.bundle.root_path}")
    reports = []
    deployed = False
    try:
        def deploy():
            state = engine.read_state()
            return engine.deploy(state, engine.plan(state))

        outcome = run_locked(engine, "deploy", False, deploy)
        deployed = True
        engine.say(f"deployed: {outcome.line()}; {outcome.files_line()}")
        results = _run_jobs(app, engine, outcome, opts, ident)
        reports = [r for r, _ in results]
    finally:
        if opts["keep"]:
            if deployed:
                logger.warning("kept the isolated copy %s at %s; remove it with: stackci gc -t %s --older-than 0s "
                               "(or stackci integration-test ... --isolation-id %s without --keep)", ident,
                               copy.bundle.root_path, copy.bundle.target, ident)
        else:
            try:
                _teardown(app, engine)
            except Exception as exc:  # the run's own outcome or interrupt is what the user must see first
                logger.error("teardown of %s failed: %s; remove it with: stackci gc -t %s --older-than 0s",
                             ident, exc, copy.bundle.target)
    p = app.platform
    outcomes = [r.outcome for r in reports]
    overall = next((s for s in SEVERITY if s in outcomes), "success")
    p.set_output("result", overall)
    p.set_output("run-ids", json.dumps({k: r.run_id for k, r in zip(opts["jobs"], reports)}, sort_keys=True))
    p.set_output("run-urls", json.dumps({k: r.url for k, r in zip(opts["jobs"], reports)}, sort_keys=True))
    junit_path = opts["junit_xml"] or default_junit_path(app, "integration-test.xml")
    path = report.write_junit(junit_path, reports, f"integration-test {copy.bundle.target}")
    p.set_output("junit-xml", str(path.resolve()))
    p.append_summary(report.summary(reports, f"Integration test of {copy.bundle.target} ({ident}): {overall}"))
    for job in reports:
        for task in job.failed_tasks:
            text = task.error_trace or task.error or task.message
            if text:
                with p.group(f"{job.name} › {task.key}: {task.outcome}"):
                    p.print_untrusted(text)
    report.annotate(p, reports)
    if overall != "success":
        bad = [f"{j.name}: {FAILURE_TEXT.get(j.outcome, j.outcome)}" for j in reports if j.outcome != "success"]
        raise RunFailed(f"integration test {overall}: " + "; ".join(bad),
                        hint="the step summary and the JUnit report have each failed task's error and trace")
    return overall


# --------------------------------------------------------------------------- gc
def _epoch(text) -> float | None:
    import calendar

    try:
        return float(calendar.timegm(time.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        return None


def gc(app: App, *, older_than: float, dry_run: bool, **load_opts) -> list[str]:
    """Remove isolated copies of the target older than ``older_than`` seconds."""
    from databricks.sdk.errors import DatabricksError, NotFound, ResourceDoesNotExist

    from ..deploy.cli import _engine, load
    from ..deploy.engine import run_locked

    base = load(app, command="gc", **load_opts)
    client = base.client
    parent = copy_root(base.bundle.root_path, "x").rsplit("/", 1)[0]
    cutoff = time.time() - older_than
    removed: list[str] = []
    try:
        entries = list(client.workspace.list(parent))
    except (NotFound, ResourceDoesNotExist):
        entries = []
    user = base.bundle.current_user.user_name if base.bundle.current_user else load_opts.get("user")
    for entry in entries:
        ident = entry.path.rsplit("/", 1)[-1]
        copy = load(app, command="gc", **{**load_opts, "user": user},
                    overrides=overrides(base.bundle.root_path, ident))
        engine = _engine(app, copy, 8, f"gc {ident}")
        state = engine.read_state()
        created = _epoch((state.deployment or {}).get("time")) if state.exists else None
        if created is None:
            created = (entry.modified_at or 0) / 1000.0
        if created > cutoff:
            continue
        logger.info("%s isolated copy %s (deployed %s)", "would remove" if dry_run else "removing", ident,
                    time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(created)))
        removed.append(ident)
        if dry_run:
            continue

        def work():
            current = engine.read_state()
            return engine.destroy(current) if current.exists else None

        run_locked(engine, "destroy", True, work)
        engine.remove_folders()
        try:
            client.workspace.delete(entry.path, recursive=True)
        except DatabricksError:
            pass
    # jobs of copies whose folder is gone, or that their state never recorded (a deploy killed
    # between creating a job and writing the state)
    known = {e.path.rsplit("/", 1)[-1] for e in entries}
    for job in client.jobs.list():
        tags = (job.settings.tags if job.settings else None) or {}
        ident, created = tags.get(TAG_COPY), tags.get(TAG_CREATED, "")
        if not ident or (ident in known and ident not in removed) or not created.isdigit():
            continue
        if int(created) > cutoff:
            continue
        logger.info("%s orphaned job %s (%s)", "would delete" if dry_run else "deleting", job.job_id,
                    job.settings.name)
        if not dry_run:
            try:
                client.jobs.delete(job.job_id)
            except DatabricksError:
                pass
        removed.append(f"job {job.job_id}")
    return removed


# --------------------------------------------------------------------------- CLI
def _bundle_options(fn):
    options = [
        click.option("-t", "--target", envvar="STACKCI_TARGET",
                     help="Bundle target whose workspace hosts the copy [default: the bundle's default target]."),
        click.option("--var", "variables", multiple=True, envvar="STACKCI_VAR", metavar="NAME=VALUE",
                     help="Set a bundle variable; repeatable."),
        click.option("-p", "--project", type=click.Path(path_type=Path), default=".", show_default=True,
                     envvar="STACKCI_PROJECT", help="Folder of the bundle (holding databricks.yml)."),
        click.option("--user", "--current-user", "user", envvar="STACKCI_CURRENT_USER", metavar="USERNAME",
                     help="The deploying identity's userName [default: asked from the workspace]."),
        click.option("--host", "host_option", envvar="STACKCI_HOST",
                     help="Workspace URL [default: the target's workspace.host]."),
        click.option("--profile", envvar="STACKCI_PROFILE", help="~/.databrickscfg profile to authenticate with."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _duration(value: str | None, option: str) -> float | None:
    from ..dbx import parse_duration

    return parse_duration(value, option) if value else None


@click.command("integration-test")
@_bundle_options
@click.option("--job", "jobs", multiple=True, required=True, envvar="STACKCI_JOB", metavar="KEY",
              help="Bundle key of a job to run (resources.jobs.<KEY>); repeatable, run in this order.")
@click.option("--parallel", is_flag=True, envvar="STACKCI_PARALLEL_JOBS", help="Run the jobs at the same time.")
@click.option("--isolation-id", envvar="STACKCI_ISOLATION_ID",
              help="Name of the isolated copy [default in CI: pr<N>-<run id>; required locally].")
@click.option("--timeout", envvar="STACKCI_TIMEOUT", help="Cancel the runs and fail after this long, e.g. 45m.")
@click.option("--keep", is_flag=True, envvar="STACKCI_KEEP", help="Leave the isolated copy for debugging.")
@click.option("--job-param", "job_params", multiple=True, type=Line(), envvar="STACKCI_JOB_PARAM",
              help="Job parameter key=value for every job; repeatable (env: one per line).")
@click.option("--retry-infra", type=click.IntRange(0, 5), default=0, show_default=True, envvar="STACKCI_RETRY_INFRA",
              help="Re-run a job this many times when the platform (not the code) failed.")
@click.option("--junit-xml", type=click.Path(path_type=Path, dir_okay=False), envvar="STACKCI_JUNIT_XML",
              help="Where to write the JUnit report [default: $RUNNER_TEMP/stackci/integration-test.xml].")
@click.option("--workspace-parallel", type=click.IntRange(1, 64), default=8, show_default=True,
              envvar="STACKCI_WORKSPACE_PARALLEL", help="Workspace requests in flight at once during deploy.")
@click.pass_obj
def integration_command(app: App, timeout, job_params, **opts) -> None:
    """Deploy an isolated copy of a target, run its jobs, report task by task, tear it down.

    Outputs: result run-ids run-urls junit-xml. Exit 1 when a job does not succeed
    (distinct messages for infrastructure failures and timeouts), 130 when interrupted
    (runs cancelled and the copy removed first).
    """
    parse_params(job_params)    # bad input fails before anything is deployed
    integration_test(app, timeout=_duration(timeout, "--timeout"), job_params=job_params, **opts)


@click.command("gc")
@_bundle_options
@click.option("--older-than", required=True, envvar="STACKCI_OLDER_THAN",
              help="Remove isolated copies last changed longer ago than this, e.g. 6h.")
@click.option("--dry-run", is_flag=True, envvar="STACKCI_DRY_RUN", help="List what would be removed.")
@click.pass_obj
def gc_command(app: App, older_than, dry_run, **opts) -> None:
    """Remove isolated copies (and their orphaned jobs) that integration tests left behind.

    Outputs: removed (count).
    """
    zero = older_than.strip() in ("0", "0s", "0m", "0h")
    seconds = 0.0 if zero else _duration(older_than, "--older-than")
    removed = gc(app, older_than=seconds, dry_run=dry_run, **opts)
    app.platform.set_output("removed", str(len(removed)))
    logger.info("%s %d isolated cop%s", "would remove" if dry_run else "removed", len(removed),
                "y" if len(removed) == 1 else "ies")
