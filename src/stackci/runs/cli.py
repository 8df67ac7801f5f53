"""``stackci run-job``: run a job that already exists in a workspace, wait, report.

For post-deploy smoke tests. The job is given by id, by its exact name, or by its bundle
key with ``-t TARGET`` (the id the target's deployment state recorded). Progress is one line per task
state change; the report is a step summary, one JUnit test case per task and one
error annotation per failed task; a timeout or an interrupt cancels the remote run.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import click

from .. import log
from ..bundle.options import Line   # one type for every --var / --job-param; integration imports it here
from ..context import App
from ..errors import ConfigError, Interrupted, RunFailed

logger = log.get("runs")

FAILURE_TEXT = {
    "failed": "a task failed",
    "infrastructure": "the platform failed (infrastructure, not your code); re-run the job",
    "timedout": "the run timed out",
    "canceled": "the run was cancelled",
    "skipped": "the run was skipped",
}


def parse_params(values: tuple[str, ...], option: str = "--job-param") -> dict[str, str]:
    params = {}
    for value in values:
        if not value:
            continue
        for item in filter(None, (v.strip() for v in value.splitlines())):
            key, sep, val = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"{option} {item!r} is not key=value", hint="write e.g. --job-param env=staging")
            params[key.strip()] = val
    return params


def ci_run_key(environ) -> str | None:
    """An id of this CI attempt (GitHub run + attempt, Azure build + job attempt), or None locally."""
    if environ.get("GITHUB_ACTIONS") == "true" and environ.get("GITHUB_RUN_ID"):
        return f"gh-{environ['GITHUB_RUN_ID']}-{environ.get('GITHUB_RUN_ATTEMPT', '1')}-{environ.get('GITHUB_JOB', '')}"
    if environ.get("TF_BUILD", "").lower() == "true" and environ.get("BUILD_BUILDID"):
        return (f"az-{environ['BUILD_BUILDID']}-{environ.get('SYSTEM_JOBATTEMPT', '1')}"
                f"-{environ.get('SYSTEM_JOBID', '')}")
    return None


def idempotency_token(environ, *parts: str) -> str | None:
    """A deterministic token (at most 64 characters) for this CI attempt and these parts."""
    key = ci_run_key(environ)
    if key is None:
        return None
    return "stackci-" + hashlib.sha256("\0".join([key, *parts]).encode()).hexdigest()[:48]


def default_junit_path(app: App, name: str) -> Path:
    """``$RUNNER_TEMP/stackci/<name>`` (``$AGENT_TEMPDIRECTORY`` on Azure), else ``<name>`` in a new
    temporary folder, which is logged: never the current directory, whose files a deploy uploads."""
    from .. import junit

    folder, new = junit.report_folder(app.environ)
    if new:
        logger.info("reports go to %s (a temporary folder; --junit-xml chooses another place)", folder)
    return folder / name


def find_job(client, job_id: int | None, job_name: str | None):
    from databricks.sdk import errors

    if job_id is not None:
        try:
            return client.jobs.get(job_id)
        except (errors.NotFound, errors.ResourceDoesNotExist, errors.InvalidParameterValue):
            raise ConfigError(f"job {job_id} does not exist in {client.config.host}",
                              hint="check --job-id (the number in the job's URL)") from None
    matches = list(client.jobs.list(name=job_name))
    if not matches:
        raise ConfigError(f"no job named {job_name!r} in {client.config.host}",
                          hint="check --job-name (the exact name, including any target prefix)")
    if len(matches) > 1:
        ids = ", ".join(str(j.job_id) for j in matches[:5])
        raise ConfigError(f"{len(matches)} jobs are named {job_name!r} ({ids})", hint="pass --job-id instead")
    return client.jobs.get(matches[0].job_id)


def run_job(app: App, client, job, *, params: dict[str, str], timeout: float | None, junit_xml: Path,
            token: str | None, stop: threading.Event | None = None) -> str:
    from . import report
    from .wait import SUCCESS, Waiter

    name = job.settings.name if job.settings else str(job.job_id)
    progress = log.Progress(logger, f"run-job {name}", clock=app.clock)
    progress.say(f"starting job {job.job_id}" + (f" with {len(params)} parameter(s)" if params else ""))
    started = client.jobs.run_now(job.job_id, job_parameters=params or None, idempotency_token=token)
    run_id = started.run_id
    waiter = Waiter(client, clock=app.clock)
    try:
        result = waiter.wait(run_id, timeout=timeout, stop=stop, label=name)
    except KeyboardInterrupt:   # the waiter has cancelled the run (or warned that it could not)
        url = getattr(waiter.last.get(run_id), "run_page_url", None)
        raise Interrupted(f"run-job {name} was interrupted: run {run_id} was cancelled",
                          hint=f"see {url}" if url else None) from None
    job_report = report.collect(client, result.run, name, outcome=result.outcome, timeout=timeout)
    app.platform.set_output("result", result.outcome)
    app.platform.set_output("run-id", str(run_id))
    app.platform.set_output("run-url", job_report.url or "")
    path = report.write_junit(junit_xml, [job_report], f"run-job {name}", redact=app.platform.redact)
    app.platform.set_output("junit-xml", str(path.resolve()))
    app.platform.append_summary(report.summary([job_report], f"Job {name}: {result.outcome}"))
    for task in job_report.failed_tasks:
        text = task.error_trace or task.error or task.message
        if text:
            with app.platform.group(f"{name} › {task.key}: {task.outcome}"):
                app.platform.print_untrusted(text)
    report.annotate(app.platform, [job_report])
    progress.say(f"{result.outcome} after {result.polls} status call{'' if result.polls == 1 else 's'} "
                 f"({job_report.url or run_id})")
    if result.outcome != SUCCESS:
        failed = ", ".join(t.key for t in job_report.failed_tasks)
        raise RunFailed(f"job {name} run {run_id}: {FAILURE_TEXT.get(result.outcome, result.outcome)}"
                        + (f" ({failed})" if failed else ""),
                        hint=f"see {job_report.url}" if job_report.url else None)
    return result.outcome


def find_bundle_job(loaded, key: str):
    """The job that the target's deployment made for ``resources.jobs.<key>``: the id recorded in
    the deployment state, else the one job with the name the bundle gives it."""
    from databricks.sdk import errors

    from ..deploy.state import StateStore

    bundle = loaded.bundle
    client = loaded.client
    jobs = bundle.resources.get("jobs") or {}
    if key not in jobs:
        raise ConfigError(f"unknown job key {key!r} in target {bundle.target}",
                          hint=f"the bundle's jobs are: {', '.join(sorted(jobs)) or 'none'}")
    name = jobs[key].settings.get("name")
    store = StateStore(client, bundle.state_path)
    state = store.read()
    entry = state.resource("jobs", key) if state.exists else None
    if entry and entry.get("id") is not None:
        try:
            return client.jobs.get(int(entry["id"]))
        except (errors.NotFound, errors.ResourceDoesNotExist, errors.InvalidParameterValue):
            raise ConfigError(f"job {key} of target {bundle.target} (id {entry['id']} in {store.path}) no longer "
                              f"exists in {loaded.host}",
                              hint=f"deploy the target again: stackci deploy -t {bundle.target}") from None
    matches = list(client.jobs.list(name=name)) if isinstance(name, str) and name else []
    if len(matches) == 1:
        logger.info("job %s is not in the deployment state %s; using the job named %r (%s)", key, store.path, name,
                    matches[0].job_id)
        return client.jobs.get(matches[0].job_id)
    if len(matches) > 1:
        ids = ", ".join(str(j.job_id) for j in matches[:5])
        raise ConfigError(f"job {key} of target {bundle.target} is not in the deployment state {store.path} and "
                          f"{len(matches)} jobs are named {name!r} ({ids})",
                          hint=f"deploy the target (stackci deploy -t {bundle.target}) or pass --job-id")
    raise ConfigError(f"job {key} of target {bundle.target} is not deployed in {loaded.host}: no deployment state "
                      f"entry at {store.path} and no job named {name!r}",
                      hint=f"deploy it first: stackci deploy -t {bundle.target}")


@click.command("run-job")
@click.option("--job-id", type=int, envvar="STACKCI_JOB_ID", help="Id of the job to run.")
@click.option("--job-name", envvar="STACKCI_JOB_NAME", help="Exact name of the job to run (instead of --job-id).")
@click.option("--job", "job_key", envvar="STACKCI_JOB", metavar="KEY",
              help="Bundle key of the job (resources.jobs.<KEY>) deployed to --target (instead of --job-id): "
                   "found through the target's deployment state.")
@click.option("-t", "--target", envvar="STACKCI_TARGET",
              help="With --job: the bundle target it was deployed to [default: the bundle's default target].")
@click.option("-p", "--project", type=click.Path(path_type=Path), default=".", show_default=True,
              envvar="STACKCI_PROJECT", help="With --job: folder of the bundle (holding databricks.yml).")
@click.option("--var", "variables", multiple=True, type=Line(), envvar="STACKCI_VAR", metavar="NAME=VALUE",
              help="With --job: set a bundle variable; repeatable (env: one per line).")
@click.option("--job-param", "job_params", multiple=True, type=Line(), envvar="STACKCI_JOB_PARAM",
              help="Job parameter key=value; repeatable (env: one per line).")
@click.option("--timeout", envvar="STACKCI_TIMEOUT",
              help="Cancel the run and fail after this long, e.g. 30m, 1h30m.")
@click.option("--junit-xml", type=click.Path(path_type=Path, dir_okay=False), envvar="STACKCI_JUNIT_XML",
              help="Where to write the JUnit report [default: $RUNNER_TEMP/stackci/run-job.xml, "
                   "$AGENT_TEMPDIRECTORY/stackci/run-job.xml or a new temporary folder].")
@click.option("--idempotency-token", "token_option", envvar="STACKCI_IDEMPOTENCY_TOKEN",
              help="Reuse the run started with this token [default in CI: derived from the CI run and "
                   "attempt, so a retried step does not start a second run].")
@click.option("--host", envvar="STACKCI_HOST",
              help="Workspace URL [default: with --job the target's workspace.host, else the SDK's DATABRICKS_HOST "
                   "or profile].")
@click.option("--profile", envvar="STACKCI_PROFILE", help="~/.databrickscfg profile to authenticate with.")
@click.pass_obj
def command(app: App, job_id, job_name, job_key, target, project, variables, job_params, timeout, junit_xml,
            token_option, host, profile) -> None:
    """Run an existing job, wait with progress, report task by task.

    The job is --job-id, --job-name, or --job KEY with -t TARGET (a job of the bundle, as
    deployed to that target). Outputs: result run-id run-url junit-xml. Exit 1 when the run
    does not succeed (a distinct message for infrastructure failures and timeouts).
    """
    from ..dbx import parse_duration, workspace_client

    given = [name for name, value in (("--job-id", job_id is not None), ("--job-name", bool(job_name)),
                                      ("--job", bool(job_key))) if value]
    if len(given) != 1:
        raise ConfigError("give exactly one of --job-id, --job-name and --job"
                          + (f" (got {' and '.join(given)})" if given else ""),
                          hint="e.g. --job-id 123, or -t staging --job model_training_job")
    bundle_only = [name for name, value in (("-t/--target", (target or "").strip()),
                                            ("--var", any(v.strip() for v in variables))) if value]
    if bundle_only and not job_key:
        raise ConfigError(f"{' and '.join(bundle_only)} {'is' if len(bundle_only) == 1 else 'are'} only for a "
                          f"bundle job (--job KEY), not for {given[0]}",
                          hint="leave it out, or name the job by its bundle key with --job")
    params = parse_params(job_params)
    seconds = parse_duration(timeout) if timeout else None
    if job_key:
        from ..deploy.cli import load

        loaded = load(app, target=target, variables=variables, project=project, user=None, host_option=host,
                      profile=profile, command="run-job")
        client = loaded.client
        job = find_bundle_job(loaded, job_key.strip())
    else:
        client = workspace_client(host, profile, app.platform)
        job = find_job(client, job_id, job_name)
    token = token_option or idempotency_token(app.environ, "run-job", str(job.job_id),
                                                    repr(sorted(params.items())))
    run_job(app, client, job, params=params, timeout=seconds,
            junit_xml=junit_xml or default_junit_path(app, "run-job.xml"), token=token)
