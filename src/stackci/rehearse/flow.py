"""The stages of a rehearsal, each run through the subcommand its CI block runs, and the report.

A stage invokes the block's click command in this process with a :class:`StagePlatform`:
the block's log lines, groups and masks go to the rehearsal's own platform as they
would in a CI log, while its outputs, annotations and step summary are kept for the
rehearsal's report (and annotations are shown against the user's files, not the
sandbox's copies). A block that raises stops the rehearsal at that stage.
"""

from __future__ import annotations

import json
import os
import shlex
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import log, markdown as md
from ..ci.base import Platform
from ..context import App
from ..errors import Interrupted, StackciError
from . import sandbox as sb

logger = log.get("rehearse")

PASSED, FAILED, NOT_RUN, SKIPPED, INTERRUPTED = "passed", "failed", "not run", "skipped", "interrupted"
ISOLATION_ID = "rehearsal"

#: modules the later stages need, imported in the background while the sandbox is built and the
#: unit tests run (databricks-sdk alone takes about a second to import). The main thread imports
#: MAIN_THREAD before the background thread starts, and none of WARM before joining it, so the two
#: threads never wait for each other's module locks.
MAIN_THREAD = ("stackci.unit_tests",)
WARM = ("requests", "yaml", "databricks.sdk", "databricks.sdk.service.jobs", "databricks.sdk.service.workspace",
        "stackci.bundle.api", "stackci.bundle.cli", "stackci.deploy.cli", "stackci.deploy.engine",
        "stackci.deploy.resources", "stackci.runs.cli", "stackci.runs.integration", "stackci.runs.report",
        "stackci.release.cli", "stackci.hosting")
#: what the local workspace says when a task needs what only a Databricks cluster has
LOCAL_ONLY_MARKERS = ("not available in the stackci local workspace", "cells need Spark", "on a Spark driver")
#: how runs are polled during a rehearsal: every LOCAL_POLL[0] s for the first LOCAL_POLL[2] polls
#: after the run starts or one of its tasks ends, then every LOCAL_POLL[1] s. The local workspace
#: answers a runs/get in about a millisecond and has no rate limit, so a short task is seen ending
#: within ~20 ms, and a long one costs ten calls a second (CI keeps the waiter's default ramp to
#: 15 s, which spares a real workspace's API)
LOCAL_POLL = (0.02, 0.1, 50)


class Background:
    """One thread that starts the local workspace, then imports what the later stages need, while
    the main thread builds the repositories (waiting on git) and runs the unit tests (waiting on
    pytest). The collector is off meanwhile (imports create ~100k objects that all stay alive, and
    collecting them again and again costs more than a tenth of a second); :meth:`join` freezes
    them out of later collections and turns it back on."""

    def __init__(self, start_workspace: Callable[[], object]) -> None:
        import gc
        import importlib

        for name in MAIN_THREAD:
            importlib.import_module(name)
        self.ready = threading.Event()
        self.workspace = None
        self.error: BaseException | None = None
        self._gc_was_enabled = gc.isenabled()
        self._joined = False
        gc.disable()
        self.thread = threading.Thread(target=self._run, args=(start_workspace,), name="stackci-rehearse-warm",
                                       daemon=True)
        self.thread.start()

    def _run(self, start_workspace: Callable[[], object]) -> None:
        import importlib

        try:
            self.workspace = start_workspace()
        except BaseException as exc:  # handed to the main thread by started()
            self.error = exc
        finally:
            self.ready.set()
        if self.error is not None:
            return
        for name in WARM:
            try:
                importlib.import_module(name)
            except Exception:  # a missing module shows up, with its real error, in the stage that needs it
                pass

    def started(self):
        """The running local workspace (waits for it); its start's error, raised here."""
        self.ready.wait()
        if self.error is not None:
            raise self.error
        return self.workspace

    def join(self) -> None:
        import gc

        self.thread.join()
        if not self._joined:
            self._joined = True
            gc.freeze()
            if self._gc_was_enabled:
                gc.enable()


# --------------------------------------------------------------------------- a block's platform
@dataclass
class Annotation:
    level: str
    message: str
    file: str | None
    line: int | None
    title: str | None


class StagePlatform(Platform):
    """What a block talks to during a rehearsal (see the module docstring)."""

    name = "local"

    def __init__(self, parent: Platform, environ, shown: Callable[[str | None], str | None],
                 warned: set | None = None) -> None:
        super().__init__(environ)
        self.parent = parent
        self.shown = shown
        #: the warnings already shown by an earlier stage: the same configuration warning (a prod
        #: target without run_as) is raised by validate, plan, deploy and run-job alike; it is shown once
        self.warned = warned if warned is not None else set()
        self.stdout = parent.stdout
        self.annotations: list[Annotation] = []
        self.summaries: list[str] = []

    def _write_output(self, name: str, value: str) -> None:
        pass                                    # kept in self.outputs for the report

    def mask(self, secret: str | None) -> None:
        super().mask(secret)
        self.parent.mask(secret)

    def redact(self, text: str) -> str:
        return self.parent.redact(super().redact(text))

    def _annotate(self, level, message, *, file, line, col, title) -> None:
        file = self.shown(file)
        self.annotations.append(Annotation(level, message, file, line, title))
        if level != "error":
            if (level, message, file, line, title) in self.warned:
                return
            self.warned.add((level, message, file, line, title))
        self.parent.annotate(level, message, file=file, line=line, col=col, title=title)

    def append_summary(self, markdown: str) -> None:
        self.summaries.append(self.redact(markdown))

    # the rehearsal folds each stage in one group; CI logs do not nest groups
    def start_group(self, title: str) -> None:
        logger.info("── %s", title)

    def end_group(self) -> None:
        pass

    def untrusted_block(self):
        return self.parent.untrusted_block()

    def neutralise(self, text: str) -> str:
        return self.parent.neutralise(text)

    def command(self, line: str) -> None:
        self.parent.command(line)


class BlockFailed(Exception):
    def __init__(self, message: str, exit_code: int, platform: StagePlatform | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.platform = platform


def invoke(app: App, box: sb.Sandbox, argv: list[str], warned: set | None = None) -> StagePlatform:
    """Run ``stackci <argv>`` in this process, as its action or template would; raise
    :class:`BlockFailed` with the block's one-line error when it fails. ``warned``: the warnings
    shown so far in the rehearsal (each is shown once)."""
    import click

    from ..cli import cli

    platform = StagePlatform(app.platform, sb.stage_environ(os.environ), box.shown, warned)
    stage_app = App(platform=platform, environ=platform.environ, verbose=app.verbose, clock=app.clock)
    name, rest = argv[0], argv[1:]
    command = cli.get_command(click.Context(cli), name)
    if command is None:
        raise BlockFailed(f"this stackci has no '{name}' command", 2)
    logger.info("$ stackci %s", shlex.join(argv).replace(str(box.base), "$REHEARSAL"))
    try:
        code = command.main(args=rest, prog_name=f"stackci {name}", standalone_mode=False, obj=stage_app)
        if isinstance(code, int) and code:
            raise BlockFailed(f"stackci {name} exited {code}", code, platform)
    except BlockFailed:
        raise
    except click.exceptions.Exit as exc:
        if exc.exit_code:
            raise BlockFailed(f"stackci {name} exited {exc.exit_code}", exc.exit_code, platform) from None
    except click.exceptions.Abort:
        raise KeyboardInterrupt from None
    except click.ClickException as exc:
        message = f"stackci {name}: " + " ".join(exc.format_message().split())
        platform.error(message, title="stackci: bad input")
        raise BlockFailed(message, 2, platform) from None
    except Interrupted:          # the block stopped what it started: the rehearsal is interrupted
        raise KeyboardInterrupt from None
    except StackciError as exc:
        platform.error(exc.one_line(), title=exc.title, file=exc.file, line=exc.line)
        raise BlockFailed(exc.one_line(), exc.exit_code, platform) from None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a bug in a block: still one line, with the traceback under -v
        if app.verbose:
            import traceback
            platform.print_untrusted(traceback.format_exc())
        message = f"unexpected {type(exc).__name__} in stackci {name}: {' '.join(str(exc).split())}"
        platform.error(message, title="stackci: internal error")
        raise BlockFailed(message, 1, platform) from None
    finally:
        platform.flush()
    return platform


# --------------------------------------------------------------------------- stages
@dataclass
class Stage:
    key: str
    title: str
    in_ci: str                      # where this stage runs in a real CI
    result: str = NOT_RUN
    duration: float = 0.0
    details: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    message: str | None = None
    commands: list[str] = field(default_factory=list)
    #: why this failure may be the local workspace's, not the project's (e.g. no Spark here)
    local_only: str | None = None
    #: what the bundle has that stackci's deploy engine (the only one a rehearsal uses) does not deploy
    engine_limit: str | None = None

    def as_json(self) -> dict:
        return {"stage": self.key, "title": self.title, "result": self.result, "duration": round(self.duration, 3),
                "details": self.details, "links": [{"label": a, "url": b} for a, b in self.links],
                "message": self.message, "in_ci": self.in_ci, "commands": self.commands,
                "local_only": self.local_only, "engine_limit": self.engine_limit}


STAGES = [
    ("setup", "set up", "the checkout and setup-python steps of every CI job"),
    ("unit-tests", "unit tests", "the pull request's unit-tests check"),
    ("validate", "validate + plan", "the pull request's validate check (and its plan comment)"),
    ("integration-test", "integration test", "the pull request's integration-test check"),
    ("deploy-staging", "deploy staging", "the staging deploy on the push to main (the merge)"),
    ("cut-release", "cut release", "the release workflow, run by hand"),
    ("deploy-prod", "deploy prod", "the prod deploy on the push to the release branch, after its approval"),
    ("smoke-run", "smoke run", "the smoke run after the prod deploy"),
]


@dataclass
class Options:
    project: Path
    python: str | None
    requirements: list[Path]
    cache_dir: Path
    work_dir: Path | None
    test_target: str
    staging_target: str
    prod_target: str
    jobs: list[str]
    smoke_job: str | None
    variables: list[str]
    bump: str
    branch_pattern: str | None
    release_branch: str | None
    timeout: str
    keep: bool

    @property
    def require_branch(self) -> str:
        return self.release_branch or (self.branch_pattern or "release/v{version}").replace("{version}", "*")


class Rehearsal:
    def __init__(self, app: App, opts: Options, box: sb.Sandbox, bundle_name: str) -> None:
        self.app = app
        self.opts = opts
        self.box = box
        self.bundle_name = bundle_name
        self.stages = [Stage(*spec) for spec in STAGES]
        self.progress = log.Progress(logger, "rehearse", app.clock)
        self.workspace = None
        self.interpreter: sb.Interpreter | None = None
        self.checkouts: dict[str, Path] = {}
        self.release: dict[str, str] = {}
        self.warm: Background | None = None
        self.warned: set = set()

    # -- helpers ------------------------------------------------------------------------
    def stage(self, key: str) -> Stage:
        return next(s for s in self.stages if s.key == key)

    def block(self, stage: Stage, argv: list[str]) -> StagePlatform:
        stage.commands.append(shlex.join(argv).replace(str(self.box.base), "$REHEARSAL"))
        try:
            return invoke(self.app, self.box, argv, self.warned)
        except BlockFailed as exc:
            if exc.platform is not None:
                self.failure_details(stage, exc.platform, exc.message)
            raise

    @staticmethod
    def failure_details(stage: Stage, platform: StagePlatform, message: str, limit: int = 3) -> None:
        """What the failed block pointed at: its first error annotations (a failing test, a failed
        task, a configuration line) and the runs it reported."""
        errors = [a for a in platform.annotations if a.level == "error" and a.message != message]
        if any(marker in a.message for a in errors for marker in LOCAL_ONLY_MARKERS):
            stage.local_only = ("a task needs Spark, which the local workspace does not have (it runs tasks as "
                                "local Python processes); on a Databricks cluster it may pass")
        for note in errors[:limit]:
            where = f"{note.file}:{note.line}: " if note.file and note.line else f"{note.file}: " if note.file else ""
            first = note.message.strip().splitlines()[0] if note.message.strip() else ""
            stage.details.append(f"{where}{note.title + ': ' if note.title else ''}{first}"[:300])
        if len(errors) > limit:
            stage.details.append(f"... and {len(errors) - limit} more errors (see the log above)")
        out = platform.outputs
        for key, url in sorted(_json(out.get("run-urls")).items()):
            if url:
                stage.links.append((f"{key} run", url))
        if out.get("run-url"):
            stage.links.append(("run", out["run-url"]))

    def var_args(self) -> list[str]:
        return [a for v in self.opts.variables for a in ("--var", v)]

    def client(self):
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.core import Config

        ws = self.workspace
        return WorkspaceClient(config=Config(host=ws.url, token=ws.token, auth_type="pat", retry_timeout_seconds=30))

    # -- the flow -----------------------------------------------------------------------
    def run(self) -> Stage | None:
        """Run every stage in order; the failed (or interrupted) stage, or None."""
        from ..runs.wait import Schedule, use_schedule

        try:
            with use_schedule(Schedule(ramp=(LOCAL_POLL[0],) * LOCAL_POLL[2], max_interval=LOCAL_POLL[1])):
                return self._run()
        finally:
            if self.warm is not None:
                self.warm.join()      # never leave an import half done at interpreter exit

    def _run(self) -> Stage | None:
        steps: list[tuple[str, Callable[[Stage], None]]] = [
            ("setup", self.setup), ("unit-tests", self.unit_tests), ("validate", self.validate),
            ("integration-test", self.integration_test), ("deploy-staging", self.deploy_staging),
            ("cut-release", self.cut_release), ("deploy-prod", self.deploy_prod), ("smoke-run", self.smoke_run)]
        total = len(steps) - 1                 # "set up" is stage 0
        for number, (key, step) in enumerate(steps):
            stage = self.stage(key)
            if key == "validate" and self.warm is not None:
                self.warm.join()                # imported while git and pytest ran
            if key == "smoke-run" and not self.opts.smoke_job:
                stage.result = SKIPPED
                stage.details.append("no --smoke-job given")
                continue
            self.progress.say(f"stage {number}/{total}: {stage.title} (in CI: {stage.in_ci})")
            started = self.app.clock()
            try:
                with self.app.platform.group(f"rehearse {number}/{total}: {stage.title}"):
                    step(stage)
                stage.result = PASSED
            except BlockFailed as exc:
                stage.result, stage.message = FAILED, exc.message
            except StackciError as exc:
                stage.result, stage.message = FAILED, exc.one_line()
            except KeyboardInterrupt:
                stage.result, stage.message = INTERRUPTED, "interrupted"
                raise
            except Exception as exc:  # not a block's verdict (an OSError of git, a bug): still this stage's failure
                logger.debug("stage %s failed", key, exc_info=True)
                text = " ".join(str(exc).split())[:300]
                stage.result, stage.message = FAILED, f"unexpected {type(exc).__name__}" + (f": {text}" if text else "")
            finally:
                stage.duration = self.app.clock() - started
            self.progress.say(f"stage {number}/{total}: {stage.title} {stage.result} in {md.seconds(stage.duration)}"
                              + (f": {stage.message}" if stage.message else ""))
            if stage.result != PASSED:
                return stage
        return None

    def setup(self, stage: Stage) -> None:
        self.interpreter = sb.project_interpreter(self.app, python=self.opts.python,
                                                  requirements=self.opts.requirements,
                                                  cache_dir=self.opts.cache_dir, project=self.opts.project)
        python, data_dir, task_env = self.interpreter.python, self.box.data_dir, {"TMPDIR": str(self.box.tmp)}

        def start_workspace():
            from ..workspace import LocalWorkspace

            return LocalWorkspace(data_dir, python=python, task_env=task_env).start()

        self.warm = Background(start_workspace)       # while git runs
        files = self.box.create_repositories(self.bundle_name)
        stage.details.append(f"{len(files)} files of {self.opts.project} committed on {sb.FEATURE_BRANCH}, "
                             f"pushed to the bare origin {self.box.origin}")
        self.checkouts["pr"] = self.box.clone("ci-pr", sb.FEATURE_BRANCH)
        stage.details.append(f"project interpreter: {self.interpreter.how}")
        self.workspace = self.warm.started()
        self.app.platform.mask(self.workspace.token)
        os.environ.update(sb.workspace_environ(self.workspace.url, self.workspace.token))
        stage.details.append(f"local workspace data in {self.box.data_dir}")
        stage.links.append(("local workspace", self.workspace.url))

    def unit_tests(self, stage: Stage) -> None:
        argv = ["unit-tests", "--project", str(self.checkouts["pr"]), "--python", self.interpreter.python,
                "--junit-xml", str(self.box.reports / "unit-tests.xml")]
        for path in self.interpreter.requirements:
            argv += ["--requirements", str(path)]
        out = self.block(stage, argv).outputs
        stage.details.append(f"{out.get('tests', '?')} tests: {out.get('passed', '?')} passed, "
                             f"{out.get('skipped', '0')} skipped in {out.get('duration', '?')} s")

    def validate(self, stage: Stage) -> None:
        try:
            self._validate(stage)
        except BlockFailed as exc:
            if exc.exit_code == 2:
                stage.engine_limit = self.engine_limit()
            raise

    def engine_limit(self) -> str | None:
        """What stackci's engine does not deploy in the targets the rehearsal deploys (read only once
        validate has failed: such a bundle deploys in CI with --engine cli, which a rehearsal has not)."""
        from ..bundle import load_bundle
        from ..deploy import support

        found: list[str] = []
        for target in dict.fromkeys([self.opts.staging_target, self.opts.prod_target, self.opts.test_target]):
            try:
                bundle = load_bundle(self.checkouts["pr"], target, self.opts.variables, env={},
                                     current_user=self.workspace.user_name if self.workspace else None)
            except StackciError:
                continue
            found += [what for what, _ in support.unsupported(bundle) if what not in found]
        return ", ".join(found) or None

    def _validate(self, stage: Stage) -> None:
        pr = str(self.checkouts["pr"])
        targets = [self.opts.staging_target, self.opts.prod_target]
        for target in targets:
            out = self.block(stage, ["validate", "-t", target, "-p", pr, *self.var_args()]).outputs
            warnings = int(out.get("warnings") or 0)
            stage.details.append(f"{target}: valid, {out.get('resources', '?')} resources"
                                 + (f", {warnings} warning(s)" if warnings else ""))
        plan_argv = ["plan", "-p", pr, *self.var_args()]
        for target in targets:
            plan_argv += ["-t", target]
        plans = _json(self.block(stage, plan_argv).outputs.get("plans"))
        for target in targets:
            c = plans.get(target) or {}
            stage.details.append(f"{target} plan: {c.get('create', '?')} to create, {c.get('update', '?')} to update, "
                                 f"{c.get('delete', '?')} to delete, {c.get('files_upload', '?')} files to upload")

    def integration_test(self, stage: Stage) -> None:
        argv = ["integration-test", "-t", self.opts.test_target, "-p", str(self.checkouts["pr"]),
                "--isolation-id", ISOLATION_ID, "--timeout", self.opts.timeout,
                "--junit-xml", str(self.box.reports / "integration-test.xml"), *self.var_args()]
        for key in self.opts.jobs:
            argv += ["--job", key]
        try:
            out = self.block(stage, argv).outputs
            urls = _json(out.get("run-urls"))
            for key in self.opts.jobs:
                stage.details.append(f"{key}: {out.get('result', '?')}")
                if urls.get(key):
                    stage.links.append((f"{key} run", urls[key]))
        finally:
            left = self.copies_left()
            if left is not None:
                stage.details.append(f"isolated copy {ISOLATION_ID!r}: " +
                                     ("removed" if not left else "LEFT BEHIND: " + ", ".join(left)))

    def copies_left(self) -> list[str] | None:
        """Jobs and folders of the isolated copy still in the workspace (None: cannot tell)."""
        if self.workspace is None:
            return None
        try:
            from ..runs.isolation import TAG_COPY
            client = self.client()
            left = [f"job {j.job_id} {j.settings.name}" for j in client.jobs.list()
                    if ((j.settings.tags if j.settings else None) or {}).get(TAG_COPY) == ISOLATION_ID]
            from ..bundle import load_bundle
            bundle = load_bundle(self.checkouts["pr"], self.opts.test_target, self.opts.variables, env={},
                                 current_user=self.workspace.user_name)
            from ..runs.isolation import copy_root
            root = copy_root(bundle.root_path, ISOLATION_ID)
            from databricks.sdk.errors import NotFound, ResourceDoesNotExist
            try:
                client.workspace.get_status(root)
                left.append(f"folder {root}")
            except (NotFound, ResourceDoesNotExist):
                pass
            return left
        except Exception as exc:  # the stage's own outcome matters more than this check
            logger.debug("cannot check the isolated copy: %s", exc)
            return None

    def _deployed(self, stage: Stage, out: dict) -> None:
        stage.details.append(f"{out.get('created', '?')} created, {out.get('changed', '?')} changed, "
                             f"{out.get('deleted', '?')} deleted, {out.get('unchanged', '?')} unchanged; "
                             f"{out.get('files-uploaded', '?')} files uploaded")
        for key, job in sorted(_json(out.get("jobs")).items()):
            if isinstance(job, dict) and job.get("url"):
                stage.links.append((f"job {key}", job["url"]))

    def deploy_staging(self, stage: Stage) -> None:
        merge = self.box.merge_feature()
        stage.details.append(f"merged {sb.FEATURE_BRANCH} into main ({merge[:12]})")
        self.checkouts["main"] = self.box.clone("ci-main", "main")
        out = self.block(stage, ["deploy", "-t", self.opts.staging_target, "-p", str(self.checkouts["main"]),
                                 *self.var_args()]).outputs
        self._deployed(stage, out)

    def cut_release(self, stage: Stage) -> None:
        argv = ["cut-release", "--bump", self.opts.bump, "--repo", str(self.checkouts["main"]), "--hosting", "none"]
        if self.opts.release_branch:
            argv += ["--release-branch", self.opts.release_branch]
        elif self.opts.branch_pattern:
            argv += ["--branch-pattern", self.opts.branch_pattern]
        out = self.block(stage, argv).outputs
        self.release = dict(out)
        refs = self.box.remote_refs()
        branch, tag, sha = out.get("branch", ""), out.get("tag", ""), out.get("sha", "")
        pushed = refs.get(f"refs/heads/{branch}") == sha and refs.get(f"refs/tags/{tag}") == sha
        stage.details.append(f"version {out.get('version')}: tag {tag} and branch {branch} at {sha[:12]}"
                             + (" pushed to origin" if pushed else " NOT on origin"))
        if not pushed:
            raise BlockFailed(f"cut-release reported {tag} on {branch}, but origin does not have both at {sha[:12]}", 1)

    def deploy_prod(self, stage: Stage) -> None:
        branch = self.release["branch"]
        self.checkouts["release"] = self.box.clone("ci-release", branch)
        stage.details.append(f"checkout of {branch} (tag {self.release.get('tag')})")
        out = self.block(stage, ["deploy", "-t", self.opts.prod_target, "-p", str(self.checkouts["release"]),
                                 "--require-branch", self.opts.require_branch, *self.var_args()]).outputs
        self._deployed(stage, out)

    def smoke_run(self, stage: Stage) -> None:
        out = self.block(stage, ["run-job", "-t", self.opts.prod_target, "--job", self.opts.smoke_job,
                                 "-p", str(self.checkouts["release"]), "--timeout", self.opts.timeout,
                                 "--junit-xml", str(self.box.reports / "smoke-run.xml"), *self.var_args()]).outputs
        stage.details.append(f"{self.opts.smoke_job}: {out.get('result', '?')}")
        if out.get("run-url"):
            stage.links.append((f"{self.opts.smoke_job} run", out["run-url"]))

    def stop(self) -> None:
        """Stop the local workspace (its running tasks are killed); never raises."""
        try:
            if self.workspace is None and self.warm is not None:
                self.warm.ready.wait(30)        # interrupted while it started: stop it all the same
                self.workspace = self.warm.workspace
            if self.workspace is not None:
                self.workspace.stop()
        except Exception as exc:  # the rehearsal's outcome is what the user must see
            logger.warning("could not stop the local workspace cleanly: %s", exc)


def _json(text: str | None) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------- report
def table_text(stages: list[Stage]) -> list[str]:
    """The stage table for the log: one row per stage, then its other details and its links."""
    rows = [(str(i), s.title, s.result, md.seconds(s.duration) if s.result != NOT_RUN else "")
            for i, s in enumerate(stages)]
    heads = ("#", "stage", "result", "time")
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(4)]
    indent = " " * (sum(widths) + 2 * len(widths))
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths)) + "  what happened"]
    for stage, row in zip(stages, rows):
        extra = list(stage.details) if stage.result != NOT_RUN else []
        if stage.message and stage.result != PASSED:
            extra.append(stage.message)
        extra += [f"{label}: {url}" for label, url in stage.links]
        lines.append(("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + (extra[0] if extra else "")).rstrip())
        lines += [indent + line for line in extra[1:]]
    return lines


def summary_markdown(title: str, stages: list[Stage], footer: list[str]) -> str:
    icons = {PASSED: "✅", FAILED: "❌", NOT_RUN: "⏭️", SKIPPED: "➖", INTERRUPTED: "⛔"}
    rows = []
    for i, s in enumerate(stages):
        links = "<br>".join(f'<a href="{md.cell(url)}">{md.cell(label)}</a>' for label, url in s.links)
        what = "<br>".join(md.cell(d) for d in s.details) if s.result != NOT_RUN else ""
        if s.message:
            what += ("<br>" if what else "") + md.code(s.message)
        rows.append([str(i), md.cell(s.title), f"{icons.get(s.result, '')} {s.result}",
                     md.seconds(s.duration) if s.result != NOT_RUN else "", what, links])
    parts = [title, "", md.table(["#", "Stage", "Result", "Time", "What happened", "Links"], rows,
                                 ["---:", "---", "---", "---:", "---", "---"])]
    if footer:
        parts += ["", *[md.cell(line) for line in footer]]
    return "\n".join(parts) + "\n"
