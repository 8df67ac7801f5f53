"""``stackci integration-test`` and ``stackci gc``: run a bundle's jobs in an isolated copy
of a target, report them task by task, and always tear the copy down.

The copy (see :mod:`stackci.runs.isolation`) is deployed with the deploy engine, its jobs
are started with idempotency tokens derived from the CI ids (a retried request or a
restarted step never launches a second run), waited for with per-task progress, and
reported as a step summary, annotations and one JUnit test case per task. Teardown runs
after success, failure and interruption alike, unless ``--keep``: on SIGINT/SIGTERM
(SIGTERM arrives as KeyboardInterrupt) the active runs are cancelled first, and further
signals are held back until the copy is gone, so a cancelled CI job leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import click

from .. import log
from ..signals import signals_held
from ..context import App
from ..errors import ConfigError, Interrupted, RunFailed
from .cli import FAILURE_TEXT, Line, ci_run_key, default_junit_path, parse_params
from .isolation import TAG_COPY, TAG_CREATED, copy_root, isolation_id, overrides

logger = log.get("runs")

#: worst first: the overall result of several jobs is the worst of theirs
SEVERITY = ["error", "infrastructure", "timedout", "failed", "canceled", "skipped", "success"]
CANCEL_GRACE = 1.5          # seconds to wait for a cancelled run to stop, per run, when interrupted


def _pause_everything(bundle) -> None:
    """Schedules, file-arrival/periodic triggers and continuous mode of every job: PAUSED, even
    where the bundle says UNPAUSED explicitly (which wins over ``presets.trigger_pause_status``)."""
    for res in (bundle.resources.get("jobs") or {}).values():
        for key in ("schedule", "trigger", "continuous"):
            section = res.settings.get(key)
            if isinstance(section, dict):
                section["pause_status"] = "PAUSED"


def run_token(environ, ident: str, key: str, job_id: int, attempt: int, params: dict, nonce: str) -> str:
    """The idempotency token of one run: deterministic per CI attempt, copy, job, retry and
    parameters, so a retried request or a restarted step gets the run it started before.
    Outside CI there is no attempt to tie it to: ``nonce``, random per invocation, still makes
    the SDK's own retries safe, while a second invocation starts a fresh run."""
    parts = [ci_run_key(environ) or f"local-{nonce}", ident, key, str(job_id), str(attempt),
             repr(sorted(params.items()))]
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
        raise ConfigError(f"unknown job key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in target "
                          f"{base.bundle.target}", hint=f"the bundle's jobs are: {', '.join(sorted(jobs)) or 'none'}")
    user = opts["user"] or (base.bundle.current_user.user_name if base.bundle.current_user else None)
    copy = load(app, user=user, command="integration-test",
                overrides=overrides(base.bundle.root_path, ident, now), **common)
    _pause_everything(copy.bundle)
    return base, copy


# --------------------------------------------------------------------------- running the jobs
@dataclass
class Runs:
    """What the run phase knows, also when it is interrupted half-way."""

    keys: list
    names: dict                                   # key -> "key (job name)"
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex)   # for tokens outside CI
    reports: dict = field(default_factory=dict)   # key -> JobReport, once known
    started: dict = field(default_factory=dict)   # key -> run id of the run being waited for
    lock: threading.Lock = field(default_factory=threading.Lock)


def _run_one(app: App, client, ident: str, key: str, job: dict, params: dict, deadline: float | None,
             timeout: float | None, retry_infra: int, stop: threading.Event, waiter, runs: Runs):
    """Start the job (re-running it after infrastructure failures), wait, record its report."""
    from . import report

    attempt = 0
    failed_runs: list[int] = []
    name = runs.names[key]
    while True:
        token = run_token(app.environ, ident, key, job["id"], attempt, params, runs.nonce)
        run_id = client.jobs.run_now(job["id"], job_parameters=params or None, idempotency_token=token).run_id
        with runs.lock:
            runs.started[key] = run_id
        remaining = None if deadline is None else max(0.0, deadline - app.clock())
        result = waiter.wait(run_id, timeout=remaining, stop=stop, label=key)
        if result.outcome == "infrastructure" and attempt < retry_infra:
            attempt += 1
            failed_runs.append(run_id)
            logger.warning("%s: run %s failed because of the platform, not the code; re-running it (%d of %d)",
                           key, run_id, attempt, retry_infra)
            continue
        job_report = report.collect(client, result.run, name, outcome=result.outcome, timeout=timeout)
        if attempt:
            job_report.note = (f"after {attempt} re-run{'s' if attempt > 1 else ''} (--retry-infra) of "
                               f"infrastructure failures: run{'s' if attempt > 1 else ''} "
                               + ", ".join(str(r) for r in failed_runs))
        with runs.lock:
            runs.reports[key] = job_report
        return job_report


def _run_jobs(app: App, client, outcome, opts, ident: str, runs: Runs) -> None:
    from . import report
    from .wait import Waiter

    params = parse_params(opts["job_params"])
    timeout = opts["timeout"]
    deadline = app.clock() + timeout if timeout else None
    waiter = Waiter(client, clock=app.clock, cancel_grace=CANCEL_GRACE)
    stop = threading.Event()
    if not opts["parallel"]:
        stopped = None
        for key in runs.keys:
            if stopped is None and deadline is not None and app.clock() >= deadline:
                stopped = "not run: --timeout passed"
            if stopped is not None:
                runs.reports[key] = report.not_run(runs.names[key], stopped)
                continue
            job_report = _run_one(app, client, ident, key, outcome.jobs[key], params, deadline, timeout,
                                  opts["retry_infra"], stop, waiter, runs)
            if job_report.outcome != "success":
                stopped = f"not run: {key} before it ended {job_report.outcome}"
        return

    errors: list[BaseException] = []

    def worker(key):
        try:
            _run_one(app, client, ident, key, outcome.jobs[key], params, deadline, timeout, opts["retry_infra"],
                     stop, waiter, runs)
        except BaseException as exc:  # KeyboardInterrupt from stop, or an API error
            errors.append(exc)
            stop.set()                 # one job cannot be followed: cancel the others too

    threads = [threading.Thread(target=worker, args=(k,), name=f"job-{k}", daemon=True) for k in runs.keys]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.2)
    except KeyboardInterrupt:
        stop.set()                      # every waiter cancels its run, then we tear down
        for t in threads:
            t.join(CANCEL_GRACE + 3)
        raise
    real = [e for e in errors if not isinstance(e, KeyboardInterrupt)]
    if real:
        raise real[0]


# --------------------------------------------------------------------------- teardown
def _cancel_active(client, state) -> None:
    """Cancel every active run of the copy's jobs (one request per job; cancel is asynchronous,
    deleting the job afterwards stops what is left)."""
    from databricks.sdk.errors import DatabricksError

    for _kind, key, entry in state.owned():
        if _kind == "jobs" and entry.get("id") is not None:
            try:
                client.jobs.cancel_all_runs(job_id=int(entry["id"]))
            except DatabricksError as exc:
                logger.debug("cancel-all for job %s (%s): %s", entry["id"], key, exc)


def teardown(engine, *, cancel_runs: bool) -> tuple[int, int]:
    """Remove the isolated copy: its runs (if asked), its jobs, experiments and models (from its
    state), then its whole root folder at once (nothing else ever lives there). Returns
    (resources deleted, files in the state)."""
    from ..deploy.engine import run_locked
    from ..deploy.state import delete_path

    counts = [0, 0]

    def work():
        state = engine.read_state()
        if not state.exists:
            return None
        if cancel_runs:
            _cancel_active(engine.client, state)
        counts[1] = len(state.files)
        state.files = {}          # one recursive delete of the root below instead of one call per file
        return engine.destroy(state)

    outcome = run_locked(engine, "destroy", True, work)
    delete_path(engine.client, engine.bundle.root_path, recursive=True)
    counts[0] = len(outcome.deleted) if outcome else 0
    return counts[0], counts[1]


def _remove_hint(opts: dict, target: str, ident: str) -> str:
    parts = ["stackci", "gc", "-t", target, "--isolation-id", ident]
    if str(opts.get("project") or ".") != ".":
        parts += ["-p", str(opts["project"])]
    for option, key in (("--host", "host_option"), ("--profile", "profile"), ("--user", "user")):
        if opts.get(key) and str(opts[key]).strip():
            parts += [option, str(opts[key]).strip()]
    for var in opts.get("variables") or ():
        parts += ["--var", var]
    return " ".join(shlex.quote(str(p)) for p in parts)


# --------------------------------------------------------------------------- the command
def integration_test(app: App, **opts) -> str:
    from . import report
    from .. import junit
    from ..deploy.cli import _engine
    from ..deploy.engine import run_locked

    ident = isolation_id(app.environ, opts["isolation_id"])
    _base, copy = _load_copy(app, opts, ident, time.time())
    target = copy.bundle.target
    engine = _engine(app, copy, opts["workspace_parallel"], f"integration-test {ident}")
    engine.say(f"isolated copy {ident} of target {target} at {copy.bundle.root_path} "
               f"(jobs named '[ci {ident}] ...', schedules and triggers paused)")
    keys = list(dict.fromkeys(opts["jobs"]))
    names = {k: k for k in keys}
    runs = Runs(keys, names)
    phase = {"deploy_started": False, "deployed": False, "runs_done": False}
    problem: list[str] = []               # what went wrong outside the jobs (deploy, API, interrupt)
    interrupted = False

    def deploy():
        phase["deploy_started"] = True    # from here on, something of ours may exist: tear it down
        state = engine.read_state()
        return engine.deploy(state, engine.plan(state))

    try:
        try:
            outcome = run_locked(engine, "deploy", False, deploy)
            phase["deployed"] = True
            engine.say(f"deployed: {outcome.line()}; {outcome.files_line()}")
            for key in keys:
                job = outcome.jobs[key]
                names[key] = f"{key} ({job.get('name') or job['id']})"
            _run_jobs(app, engine.client, outcome, opts, ident, runs)
            phase["runs_done"] = True
        except KeyboardInterrupt:   # torn down below, then said as one line (exit 130)
            interrupted = True
            problem.append("interrupted")
        except Exception as exc:
            where = "deploy of the isolated copy" if not phase["deployed"] else "run"
            text = exc.one_line() if hasattr(exc, "one_line") else f"{type(exc).__name__}: {exc}"
            problem.append(f"{where} failed: {' '.join(text.split())}")
            raise
    finally:
        with signals_held("tearing down the isolated copy") as late:
            removal = _finish(app, engine, opts, copy, ident, phase, interrupted)
            try:
                overall = _publish(app, report, junit, opts, runs, target, ident, problem, interrupted, removal)
            except Exception as exc:  # never hide the run's own error behind a failed report
                logger.error("could not write the reports: %s", exc)
                overall = "error"
    if interrupted or late:
        what = "its runs were cancelled" if interrupted else \
            f"during the teardown, after its runs had ended ({overall})"
        raise Interrupted(f"integration test of {target} was interrupted: {what}; isolated copy "
                          f"{ident}: {' '.join(removal.split())}")
    if overall != "success":
        bad = [f"{r.name}: {FAILURE_TEXT.get(r.outcome, r.outcome)}" for r in
               (runs.reports.get(k) for k in keys) if r is not None and r.outcome != "success"]
        raise RunFailed(f"integration test of {target} {overall}: " + "; ".join(bad),
                        hint="the step summary and the JUnit report have each failed task's error and trace")
    return overall


def _finish(app: App, engine, opts, copy, ident: str, phase: dict, interrupted: bool) -> str:
    """Tear down (or keep) the copy; returns one line for the summary."""
    target = copy.bundle.target
    hint = _remove_hint(opts, target, ident)
    if not phase["deploy_started"]:
        return "nothing was deployed"
    if opts["keep"]:
        app.platform.annotate("notice", f"the isolated copy {ident} stays at {copy.bundle.root_path} (--keep); "
                              f"remove it with: {hint}", title="stackci: --keep")
        return f"kept at {copy.bundle.root_path} (--keep); remove it with `{hint}`"
    started = app.clock()
    if interrupted:
        engine.say("interrupted: cancelling the copy's runs, then tearing it down")
    try:
        deleted, files = teardown(engine, cancel_runs=not phase["runs_done"])
    except Exception as exc:  # the run's own outcome or interrupt is what the user must see first
        text = exc.one_line() if hasattr(exc, "one_line") else f"{type(exc).__name__}: {exc}"
        app.platform.warning(f"teardown of the isolated copy {ident} failed: {' '.join(text.split())}; remove it "
                             f"with: {hint} (the nightly gc removes it otherwise)", title="stackci: teardown failed")
        return f"teardown failed; remove it with `{hint}`"
    engine.say(f"tore down the isolated copy in {app.clock() - started:.1f}s ({deleted} resources, "
               f"{files} files)")
    return f"removed ({deleted} resources, {files} files)"


def _publish(app: App, report, junit, opts, runs: Runs, target: str, ident: str, problem: list, interrupted: bool,
             removal: str) -> str:
    """Outputs, JUnit file, step summary, annotations: from what is known, also after a failure."""
    from .wait import CANCELED

    p = app.platform
    for key in runs.keys:
        if key in runs.reports:
            continue
        run_id = runs.started.get(key)
        if run_id is not None:   # interrupted (or an API error) while waiting: the run was cancelled
            reason = "interrupted: the run was cancelled" if interrupted else "the wait failed: the run was cancelled"
            runs.reports[key] = report.not_run(runs.names[key], reason, CANCELED, run_id)
        else:
            runs.reports[key] = report.not_run(runs.names[key], "not run" + (f": {problem[0]}" if problem else ""))
    reports = [runs.reports[k] for k in runs.keys]
    outcomes = [r.outcome for r in reports]
    if interrupted:
        overall = "canceled"
    elif problem:
        overall = "error"
    else:
        overall = next((s for s in SEVERITY if s in outcomes), "success")
    p.set_output("result", overall)
    p.set_output("run-ids", json.dumps({k: r.run_id for k, r in zip(runs.keys, reports) if r.run_id is not None},
                                       sort_keys=True))
    p.set_output("run-urls", json.dumps({k: r.url for k, r in zip(runs.keys, reports) if r.url}, sort_keys=True))
    extra = []
    if problem and not interrupted:
        extra.append(junit.Case(name="deploy" if problem[0].startswith("deploy") else "integration-test",
                                classname=f"integration-test {target}", status=junit.ERROR, message=problem[0]))
    path = report.write_junit(opts["junit_xml"] or default_junit_path(app, "integration-test.xml"), reports,
                              f"integration-test {target}", extra, redact=p.redact)
    p.set_output("junit-xml", str(path.resolve()))
    text = report.summary(reports, f"Integration test of {target} ({ident}): {overall}")
    from .. import markdown as md
    lines = [text.rstrip("\n"), ""]
    if problem:
        lines.append(f"**{md.cell(problem[0])}**")
    lines.append(f"Isolated copy `{ident}`: {md.cell(removal)}")
    p.append_summary("\n".join(lines) + "\n")
    for job in reports:
        for task in job.failed_tasks:
            body = task.error_trace or task.error or task.message
            if body:
                with p.group(f"{job.name} › {task.key}: {task.outcome}"):
                    p.print_untrusted(body)
    report.annotate(p, reports)
    return overall


# --------------------------------------------------------------------------- gc
def _epoch(text) -> float | None:
    import calendar

    try:
        return float(calendar.timegm(time.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        return None


def gc(app: App, *, older_than: float | None, only: str | None, dry_run: bool, **load_opts) -> list[str]:
    """Remove the isolated copies of the target older than ``older_than`` seconds (or the one
    named ``only``), then jobs tagged as copies of this bundle and target that no copy's state
    knows (a deploy killed between creating a job and recording it)."""
    from databricks.sdk.errors import DatabricksError, NotFound, ResourceDoesNotExist

    from ..deploy.cli import _engine, load
    from ..deploy.state import delete_path

    base = load(app, command="gc", **load_opts)
    bundle = base.bundle
    client = base.client
    parent = copy_root(bundle.root_path, "x").rsplit("/", 1)[0]
    cutoff = time.time() - older_than if older_than is not None else None
    progress = log.Progress(logger, f"gc {bundle.target}", clock=app.clock)
    verb = "would remove" if dry_run else "removing"
    try:
        entries = [e for e in client.workspace.list(parent)
                   if getattr(e.object_type, "value", e.object_type) == "DIRECTORY"]
    except (NotFound, ResourceDoesNotExist):
        entries = []
    progress.say(f"{len(entries)} isolated cop{'y' if len(entries) == 1 else 'ies'} under {parent}")
    user = load_opts.get("user") or (bundle.current_user.user_name if bundle.current_user else None)
    removed: list[str] = []
    kept: set[str] = set()
    for entry in entries:
        ident = entry.path.rsplit("/", 1)[-1]
        if only is not None and ident != only:
            kept.add(ident)
            continue
        copy = load(app, command="gc", **{**load_opts, "user": user}, overrides=overrides(bundle.root_path, ident))
        engine = _engine(app, copy, 8, f"gc {ident}")
        state = engine.read_state()
        created = _epoch((state.deployment or {}).get("time")) if state.exists else None
        if created is None:
            created = (entry.modified_at or 0) / 1000.0
        if cutoff is not None and created > cutoff:
            kept.add(ident)
            continue
        age = time.time() - created
        progress.say(f"{verb} isolated copy {ident} (deployed {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(created))}"
                     f", {age / 3600:.1f} h ago)")
        removed.append(ident)
        if dry_run:
            continue
        teardown(engine, cancel_runs=True)
        delete_path(client, entry.path, recursive=True)
    if only is not None and only not in removed and only not in kept:
        logger.info("no isolated copy %s under %s", only, parent)
    # jobs of copies whose folder is gone, or that their state never recorded
    from ..deploy.resources import bundle_tags

    ours = bundle_tags(bundle)
    for job in client.jobs.list():
        tags = (job.settings.tags if job.settings else None) or {}
        ident, created = tags.get(TAG_COPY), tags.get(TAG_CREATED, "")
        if not ident or any(tags.get(k) != v for k, v in ours.items()):
            continue
        if ident in kept or (dry_run and ident in removed) or (only is not None and ident != only) \
                or not created.isdigit():
            continue
        if cutoff is not None and int(created) > cutoff:
            continue
        progress.say(f"{'would delete' if dry_run else 'deleting'} orphaned job {job.job_id} "
                     f"({job.settings.name}) of copy {ident}")
        if not dry_run:
            try:
                client.jobs.cancel_all_runs(job_id=job.job_id)
                client.jobs.delete(job.job_id)
            except (NotFound, ResourceDoesNotExist):
                pass
            except DatabricksError as exc:
                logger.warning("could not delete orphaned job %s: %s", job.job_id, exc)
                continue
        removed.append(f"job {job.job_id}")
    return removed


# --------------------------------------------------------------------------- CLI
def _bundle_options(fn):
    from ..deploy.cli import project_options

    for option in reversed(project_options(
            "Bundle target whose workspace hosts the copy [default: the bundle's default target].")):
        fn = option(fn)
    return fn


def _duration(value: str | None, option: str) -> float | None:
    from ..dbx import parse_duration

    return parse_duration(value, option) if value else None


@click.command("integration-test")
@_bundle_options
@click.option("--job", "jobs", multiple=True, required=True, envvar="STACKCI_JOB", metavar="KEY",
              help="Bundle key of a job to run (resources.jobs.<KEY>); repeatable (env: separated by spaces or "
                   "newlines). Run in this order; a job that does not succeed stops the ones after it.")
@click.option("--parallel", is_flag=True, envvar="STACKCI_PARALLEL_JOBS", help="Run the jobs at the same time.")
@click.option("--isolation-id", envvar="STACKCI_ISOLATION_ID",
              help="Name of the isolated copy [default in CI: pr<N>-<run id>, or run<run id> outside a pull "
                   "request; required locally].")
@click.option("--timeout", envvar="STACKCI_TIMEOUT",
              help="Cancel the runs and fail once the jobs have taken this long in all, e.g. 45m.")
@click.option("--keep", is_flag=True, envvar="STACKCI_KEEP",
              help="Leave the isolated copy for debugging (and print how to remove it).")
@click.option("--job-param", "job_params", multiple=True, type=Line(), envvar="STACKCI_JOB_PARAM",
              help="Job parameter key=value for every job; repeatable (env: one per line).")
@click.option("--retry-infra", type=click.IntRange(0, 5), default=0, show_default=True, envvar="STACKCI_RETRY_INFRA",
              help="Re-run a job up to this many times when the platform (not the code) failed.")
@click.option("--junit-xml", type=click.Path(path_type=Path, dir_okay=False), envvar="STACKCI_JUNIT_XML",
              help="Where to write the JUnit report [default: $RUNNER_TEMP/stackci/integration-test.xml, "
                   "$AGENT_TEMPDIRECTORY/stackci/integration-test.xml or a new temporary folder].")
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
    seconds = _duration(timeout, "--timeout")
    integration_test(app, timeout=seconds, job_params=job_params, **opts)


@click.command("gc")
@_bundle_options
@click.option("--older-than", envvar="STACKCI_OLDER_THAN",
              help="Remove isolated copies deployed longer ago than this, e.g. 6h (longer than your longest "
                   "integration test).")
@click.option("--isolation-id", "only", envvar="STACKCI_ISOLATION_ID",
              help="Remove only this copy (e.g. one kept with --keep), whatever its age unless --older-than.")
@click.option("--dry-run", is_flag=True, envvar="STACKCI_DRY_RUN", help="List what would be removed; change nothing.")
@click.pass_obj
def gc_command(app: App, older_than, only, dry_run, **opts) -> None:
    """Remove isolated copies (and their orphaned jobs) that integration tests left behind.

    Outputs: removed (how many copies and jobs).
    """
    if not older_than and not only:
        raise ConfigError("give --older-than (e.g. 6h) or --isolation-id", hint="e.g. stackci gc -t test --older-than 6h")
    seconds = None
    if older_than:
        zero = older_than.strip() in ("0", "0s", "0m", "0h")
        seconds = 0.0 if zero else _duration(older_than, "--older-than")
    if only is not None:
        only = isolation_id({}, only)
    removed = gc(app, older_than=seconds, only=only, dry_run=dry_run, **opts)
    app.platform.set_output("removed", str(len(removed)))
    from .. import markdown as md
    title = f"### 🧹 gc of {md.code(opts.get('target') or 'the default target')}: " \
            f"{'would remove' if dry_run else 'removed'} {len(removed)}"
    app.platform.append_summary(title + "\n\n" + "\n".join(f"- {md.code(r)}" for r in removed) + "\n")
    logger.info("%s %d isolated cop%s and orphaned jobs%s", "would remove" if dry_run else "removed", len(removed),
                "y" if len(removed) == 1 else "ies", " (dry run: nothing was changed)" if dry_run else "")
