"""``stackci unit-tests``: run the project's pytest suite with the project's own interpreter.

Always writes JUnit XML, turns it into outputs, a step summary and one error
annotation per failing test, and exits 1 when anything failed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from . import junit, log, markdown as md
from .context import App
from .dbx import CREDENTIAL_VARIABLES as DATABRICKS_CREDENTIALS
from .errors import ConfigError, RunFailed

logger = log.get("unit_tests")

#: pytest's exit codes
PYTEST_OK, PYTEST_FAILED, PYTEST_INTERRUPTED, PYTEST_INTERNAL, PYTEST_USAGE, PYTEST_NO_TESTS = range(6)


@dataclass
class Options:
    project: Path
    python: str
    requirements: tuple[str, ...] = ()
    pytest_args: str = ""
    junit_xml: Path | None = None
    allow_no_tests: bool = False
    coverage: bool = False
    coverage_source: tuple[str, ...] = ()
    fail_under: float | None = None
    slowest: int = 5
    from_junit: Path | None = None
    max_annotations: int = 50
    dry_run: bool = False


# --------------------------------------------------------------------------- preconditions
def resolve_project(project: Path) -> Path:
    if not project.exists():
        raise ConfigError(f"project directory {str(project)!r} does not exist",
                          hint="pass --project (STACKCI_PROJECT) with the folder that holds your tests")
    if not project.is_dir():
        raise ConfigError(f"project {str(project)!r} is a file, not a directory",
                          hint="pass --project (STACKCI_PROJECT) with the folder that holds your tests")
    return project.resolve()


def resolve_python(python: str) -> str:
    if os.sep in python or (os.altsep and os.altsep in python):
        path = Path(python).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path.absolute())
        raise ConfigError(f"python interpreter {python!r} does not exist or is not executable",
                          hint="pass --python (STACKCI_PYTHON) with the interpreter that has your project's "
                               "dependencies, e.g. the one actions/setup-python installed")
    found = shutil.which(python)
    if not found:
        raise ConfigError(f"python interpreter {python!r} is not on PATH",
                          hint="pass --python (STACKCI_PYTHON) with the interpreter that has your project's "
                               "dependencies, e.g. python3 after actions/setup-python")
    return found


def split_requirements(values: tuple[str, ...]) -> list[str]:
    """Each value may hold several paths separated by newlines, commas or spaces (action inputs)."""
    out: list[str] = []
    for value in values:
        out += [p for p in value.replace(",", "\n").split() if p]
    return out


def resolve_requirements(values: tuple[str, ...], project: Path) -> list[Path]:
    files = []
    for raw in split_requirements(values):
        candidates = [Path(raw)] if Path(raw).is_absolute() else [project / raw, Path.cwd() / raw]
        path = next((c for c in candidates if c.exists()), candidates[0])
        try:
            with open(path, "rb") as fh:
                fh.read(1)
        except IsADirectoryError:
            raise ConfigError(f"requirements file {raw!r} is a directory",
                              hint="pass the path of a requirements .txt file with --requirements") from None
        except OSError as exc:
            raise ConfigError(f"cannot read requirements file {raw!r}: {exc.strerror or exc}",
                              hint="paths are relative to the project directory (or the current directory); "
                                   "fix --requirements (STACKCI_REQUIREMENTS)") from None
        files.append(path.resolve())
    return files


def parse_pytest_args(text: str) -> list[str]:
    try:
        return shlex.split(text or "")
    except ValueError as exc:
        raise ConfigError(f"cannot split --pytest-args {text!r}: {exc}",
                          hint="quote arguments as in a shell, e.g. --pytest-args '-k \"not slow\"'") from None


#: credentials the project's tests inherit from the job's environment: masked before pytest runs,
#: so a test that prints one shows ``***`` in the log, the JUnit file and the summary
CREDENTIAL_VARIABLES = (*DATABRICKS_CREDENTIALS, "GITHUB_TOKEN", "SYSTEM_ACCESSTOKEN")
#: pytest's closing line: "29 passed in 1.89s", "= 1 failed, 2 passed in 61.20s (0:01:01) =", "no tests ran in 0.01s"
_PYTEST_SUMMARY = re.compile(
    r"^=*\s*(?P<counts>(?:\d+ (?:passed|failed|errors?|skipped|deselected|xfailed|xpassed|warnings?|rerun)"
    r"(?:, )?)+|no tests ran)\s+in (?P<seconds>\d+(?:\.\d+)?)s\b(?: \([\d:]+\))?\s*=*\s*$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")     # PY_COLORS / FORCE_COLOR colour the closing line
_DESELECTED = re.compile(r"\b(\d+) deselected\b")


def child_environment(app: App) -> dict[str, str]:
    """The user's environment, without stackci's own virtual environment leaking into pytest."""
    env = dict(app.environ)
    own = sys.prefix
    if env.get("VIRTUAL_ENV") and Path(env["VIRTUAL_ENV"]).resolve() == Path(own).resolve():
        env.pop("VIRTUAL_ENV")
    env.pop("PYTHONHOME", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def check_module(python: str, module: str, env: dict[str, str]) -> bool:
    """Whether ``python`` can import ``module``: found on its path, not imported (importing pytest
    costs a tenth of a second or more; a broken install still fails loudly when pytest runs)."""
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    proc = subprocess.run([python, "-c", probe], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=120)
    return proc.returncode == 0


# --------------------------------------------------------------------------- running
def stream(app: App, argv: list[str], cwd: Path, env: dict[str, str], tail: list[str] | None = None) -> int:
    """Run ``argv`` and forward its output as outside text (it may contain anything); the last
    lines are kept in ``tail`` when given."""
    logger.debug("running %s", shlex.join(argv))
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    try:
        with app.platform.untrusted_block() as write:
            assert proc.stdout is not None
            for raw in iter(proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace")
                write(line)
                if tail is not None:
                    tail.append(line.strip())
                    del tail[:-20]
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def install_requirements(app: App, python: str, files: list[Path], cwd: Path, env: dict[str, str]) -> None:
    argv = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    for f in files:
        argv += ["-r", str(f)]
    with app.platform.group("Install requirements"):
        code = stream(app, argv, cwd, env)
    if code != 0:
        raise RunFailed(f"installing the requirements failed (pip exited {code})",
                        hint="see the pip output above; check the files given with --requirements")


def pytest_command(opts: Options, python: str, junit_path: Path, extra: list[str],
                   coverage_data: Path | None) -> list[str]:
    argv = [python, "-m"]
    if coverage_data is not None:
        argv += ["coverage", "run", f"--data-file={coverage_data}"]
        for source in opts.coverage_source:
            argv.append(f"--source={source}")
        argv += ["-m"]
    argv += ["pytest", f"--junitxml={junit_path}", "-o", "junit_family=xunit1"]
    return argv + extra


def coverage_total(app: App, python: str, data: Path, out_dir: Path, cwd: Path,
                   env: dict[str, str]) -> tuple[float | None, Path | None]:
    json_path, xml_path = out_dir / "coverage.json", out_dir / "coverage.xml"
    for args in (["json", "-o", str(json_path)], ["xml", "-o", str(xml_path)]):
        proc = subprocess.run([python, "-m", "coverage", *args, f"--data-file={data}"], cwd=cwd, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        if proc.returncode != 0:
            app.platform.print_untrusted(proc.stdout.decode("utf-8", "replace"))
            app.platform.warning("coverage produced no report (see the log)", title="stackci: coverage")
            return None, None
    try:
        total = float(json.loads(json_path.read_text())["totals"]["percent_covered"])
    except (OSError, ValueError, KeyError):
        return None, None
    return total, xml_path


# --------------------------------------------------------------------------- reporting
def repo_relative(path: str | None, project: Path, app: App) -> str | None:
    """Annotation paths are relative to the repository root so GitHub/Azure can link them."""
    if not path:
        return None
    absolute = (project / path).resolve()
    root = app.environ.get("GITHUB_WORKSPACE") or app.environ.get("BUILD_SOURCESDIRECTORY") or os.getcwd()
    try:
        return absolute.relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return absolute.as_posix()


def summary_markdown(report: junit.Report, project_label: str, ok: bool, coverage: float | None,
                     slowest: int, note: str | None = None) -> str:
    icon = "✅" if ok else "❌"
    verdict = "passed" if ok else "failed"
    headers = ["Tests", "Passed", "Failed", "Errors", "Skipped", "Duration"]
    row = [str(report.total), str(report.passed), str(report.failed), str(report.errors),
           str(report.skipped), md.seconds(report.duration)]
    if coverage is not None:
        headers.append("Coverage")
        row.append(f"{coverage:.1f} %")
    parts = [f"### {icon} Unit tests {verdict} · {md.code(project_label)}", "",
             md.table(headers, [row], ["---:"] * len(headers))]
    if note:
        parts += ["", md.cell(note)]
    problems = report.problems
    if problems:
        parts += ["", f"#### Failures ({len(problems)})", ""]
        for case in problems[:50]:
            body = (case.message + "\n\n" if case.message else "") + (case.text or "")
            parts.append(md.details(f"{case.status}: {md.code(case.test_id)}", md.fence(body.strip() or "(no message)")))
        if len(problems) > 50:
            parts.append(f"\n… and {len(problems) - 50} more; see the JUnit file.")
    slow = report.slowest(slowest) if slowest > 0 else []
    if slow:
        parts += ["", f"#### Slowest {len(slow)} tests", "",
                  md.table(["Test", "Duration"], [[md.code(c.test_id), md.seconds(c.time)] for c in slow],
                           ["---", "---:"])]
    return "\n".join(parts) + "\n"


def annotate_failures(app: App, report: junit.Report, project: Path, limit: int) -> None:
    problems = report.problems
    for case in problems[:limit]:
        file, line = case.failure_location()
        message = case.message or "failed"
        if case.text:
            tail = "\n".join(case.text.strip().splitlines()[-25:])
            message = f"{message}\n\n{tail}"
        app.platform.error(message[:4000], file=repo_relative(file, project, app), line=line,
                           title=f"{case.test_id} {'failed' if case.status == junit.FAILED else 'errored'}")
    if len(problems) > limit:
        app.platform.warning(f"{len(problems) - limit} more failing tests are not annotated; "
                             "see the step summary or the JUnit file", title="stackci: unit tests")


def publish(app: App, opts: Options, report: junit.Report, junit_path: Path, coverage: float | None,
            coverage_xml: Path | None, ok: bool, note: str | None = None) -> None:
    p = app.platform
    p.set_output("passed", report.passed)
    p.set_output("failed", report.failed)
    p.set_output("skipped", report.skipped)
    p.set_output("errors", report.errors)
    p.set_output("tests", report.total)
    p.set_output("duration", f"{report.duration:.2f}")
    p.set_output("junit-xml", str(junit_path))
    if coverage is not None:
        p.set_output("coverage", f"{coverage:.2f}")
    if coverage_xml is not None:
        p.set_output("coverage-xml", str(coverage_xml))
    label = repo_relative(".", opts.project, app) or str(opts.project)
    p.append_summary(summary_markdown(report, label, ok, coverage, opts.slowest, note))
    annotate_failures(app, report, opts.project, opts.max_annotations)
    logger.info("%d tests: %d passed, %d failed, %d errors, %d skipped in %s%s", report.total, report.passed,
                report.failed, report.errors, report.skipped, md.seconds(report.duration),
                f"; coverage {coverage:.1f} %" if coverage is not None else "")


def pytest_facts(tail: list[str]) -> tuple[float | None, int]:
    """(pytest's own duration, tests deselected) from its closing line, where it printed one."""
    for line in reversed(tail):
        found = _PYTEST_SUMMARY.match(_ANSI.sub("", line))
        if found:
            deselected = _DESELECTED.search(found["counts"])
            return float(found["seconds"]), int(deselected.group(1)) if deselected else 0
    return None, 0


def check_coverage_options(opts: Options) -> None:
    if opts.coverage or opts.from_junit is not None:
        return
    given = [name for name, value in (("--fail-under", opts.fail_under is not None),
                                      ("--coverage-source", bool(opts.coverage_source))) if value]
    if given:
        raise ConfigError(f"{' and '.join(given)} without --coverage: coverage is not measured, so "
                          f"{'they' if len(given) > 1 else 'it'} would do nothing",
                          hint="add --coverage (STACKCI_COVERAGE=true; coverage: true in the action or the template), "
                               "or drop " + " and ".join(given))


def run(app: App, opts: Options) -> None:
    check_coverage_options(opts)
    if opts.from_junit is not None:
        report = junit.parse(opts.from_junit)
        opts.project = resolve_project(opts.project)
        _finish(app, opts, report, opts.from_junit.resolve(), None, None, None)
        return

    # Preconditions, all before any side effect.
    opts.project = resolve_project(opts.project)
    python = resolve_python(opts.python)
    requirements = resolve_requirements(opts.requirements, opts.project)
    extra = parse_pytest_args(opts.pytest_args)
    if opts.slowest < 0 or opts.max_annotations < 0:
        raise ConfigError("--slowest and --max-annotations must be 0 or more")
    ci_folder = junit.ci_report_folder(app.environ)
    junit_path = opts.junit_xml.absolute() if opts.junit_xml else \
        (ci_folder / "unit-tests.xml").absolute() if ci_folder else None
    env = child_environment(app)
    if not requirements and not check_module(python, "pytest", env):
        raise ConfigError(f"pytest is not installed for {python}",
                          hint="add pytest to a requirements file and pass it with --requirements "
                               "(STACKCI_REQUIREMENTS), or pass --python with the right interpreter")
    if opts.dry_run:
        shown = junit_path or Path("<a new temporary folder>") / "unit-tests.xml"
        logger.info("dry run: would install %s with %s", ", ".join(map(str, requirements)) or "nothing", python)
        logger.info("dry run: would run %s in %s",
                    shlex.join(pytest_command(opts, python, shown, extra,
                                              shown.parent / ".coverage" if opts.coverage else None)),
                    opts.project)
        return

    for name in CREDENTIAL_VARIABLES:
        app.platform.mask(env.get(name))
    progress = log.Progress(logger, "unit tests", app.clock)
    if requirements:
        progress.say(f"installing {len(requirements)} requirements file(s) into {python}")
        install_requirements(app, python, requirements, opts.project, env)
        if not check_module(python, "pytest", env):
            raise ConfigError(f"pytest is not installed for {python} even after installing the requirements",
                              hint="add pytest to one of the files given with --requirements")
    if opts.coverage and not check_module(python, "coverage", env):
        raise ConfigError(f"--coverage needs the coverage package for {python}",
                          hint="add coverage (or pytest-cov) to your requirements")

    if junit_path is None:
        folder = junit.report_folder(app.environ)[0]       # not in CI here: a new temporary folder
        junit_path = folder / "unit-tests.xml"
        progress.say(f"reports go to {folder} (a temporary folder; --junit-xml chooses another place)")
    junit_path.parent.mkdir(parents=True, exist_ok=True)
    if junit_path.exists():
        junit_path.unlink()
    coverage_data = junit_path.parent / ".coverage" if opts.coverage else None
    argv = pytest_command(opts, python, junit_path, extra, coverage_data)
    progress.say(f"running pytest in {opts.project}")
    tail: list[str] = []
    with app.platform.group("pytest"):
        code = stream(app, argv, opts.project, env, tail)
    progress.say(f"pytest exited {code}")
    seconds, deselected = pytest_facts(tail)

    if code == PYTEST_USAGE:
        raise ConfigError(f"pytest rejected its arguments (exit {code})",
                          hint="check --pytest-args (STACKCI_PYTEST_ARGS) and the output above")
    if not junit_path.is_file():
        raise RunFailed(f"pytest exited {code} without writing {junit_path}", hint="see the pytest output above")
    junit.redact_file(junit_path, app.platform.redact, app.platform.secrets)
    report = junit.parse(junit_path)
    if seconds is not None:
        report.duration = seconds      # what pytest printed (its JUnit time leaves collection out)
    coverage = coverage_xml = None
    if coverage_data is not None and code in (PYTEST_OK, PYTEST_FAILED):
        coverage, coverage_xml = coverage_total(app, python, coverage_data, junit_path.parent, opts.project, env)
    _finish(app, opts, report, junit_path, coverage, coverage_xml, code, deselected)


def _finish(app: App, opts: Options, report: junit.Report, junit_path: Path, coverage: float | None,
            coverage_xml: Path | None, code: int | None, deselected: int = 0) -> None:
    no_tests = report.total == 0 or code == PYTEST_NO_TESTS
    failures = report.failed + report.errors
    below = (opts.fail_under is not None and coverage is not None and coverage < opts.fail_under)
    problem: str | None = None
    if failures:
        problem = f"{report.failed} failed and {report.errors} errored of {report.total} tests"
    elif code not in (None, PYTEST_OK, PYTEST_NO_TESTS):
        problem = f"pytest exited {code} (interrupted or internal error)"
    elif no_tests and not opts.allow_no_tests:
        problem = (f"no tests were selected: all {deselected} collected tests were deselected" if deselected
                   else "no tests were collected")
    elif below:
        problem = f"coverage {coverage:.1f} % is below --fail-under {opts.fail_under:g} %"
    note = None
    hint = None
    if no_tests and not opts.allow_no_tests:
        if deselected:
            note = (f"No tests ran: pytest deselected all {deselected} tests it collected. Check the -k / -m "
                    "expression in --pytest-args, or pass --allow-no-tests.")
            hint = ("check the -k / -m expression in --pytest-args (STACKCI_PYTEST_ARGS), or pass --allow-no-tests")
        else:
            note = "No tests were collected. Add tests, fix the test paths, or pass --allow-no-tests."
            hint = f"pytest found no tests in {opts.project}; add tests or pass --allow-no-tests"
    publish(app, opts, report, junit_path, coverage, coverage_xml, problem is None, note)
    if problem:
        raise RunFailed(f"unit tests failed: {problem}", hint=hint if problem.startswith("no tests") else None)


# --------------------------------------------------------------------------- CLI
@click.command("unit-tests")
@click.option("-p", "--project", type=click.Path(path_type=Path), default=".", show_default=True,
              envvar="STACKCI_PROJECT", help="Folder of the project whose pytest suite runs (its rootdir).")
@click.option("--python", default="python3", show_default=True, envvar="STACKCI_PYTHON",
              help="The project's interpreter (name on PATH or path); not stackci's own environment.")
@click.option("-r", "--requirements", multiple=True, envvar="STACKCI_REQUIREMENTS",
              help="Requirements file to pip-install into --python first; repeatable, or several separated by "
                   "spaces/newlines. Relative to the project, else the current directory.")
@click.option("--pytest-args", default="", envvar="STACKCI_PYTEST_ARGS",
              help="Extra pytest arguments, split like a shell would (e.g. '-k \"not slow\" tests/unit').")
@click.option("--junit-xml", type=click.Path(path_type=Path, dir_okay=False), envvar="STACKCI_JUNIT_XML",
              help="Where to write JUnit XML [default: $RUNNER_TEMP/stackci, $AGENT_TEMPDIRECTORY/stackci "
                   "or a new temporary folder]/unit-tests.xml.")
@click.option("--allow-no-tests", is_flag=True, envvar="STACKCI_ALLOW_NO_TESTS",
              help="Succeed when pytest collects no tests.")
@click.option("--coverage", is_flag=True, envvar="STACKCI_COVERAGE",
              help="Measure coverage (needs the coverage package in --python); total in outputs and summary.")
@click.option("--coverage-source", multiple=True, envvar="STACKCI_COVERAGE_SOURCE",
              help="With --coverage: packages or folders to measure (coverage --source); repeatable.")
@click.option("--fail-under", type=click.FloatRange(0, 100), envvar="STACKCI_FAIL_UNDER",
              help="With --coverage: fail when the total is below this percentage.")
@click.option("--slowest", type=int, default=5, show_default=True, envvar="STACKCI_SLOWEST",
              help="How many of the slowest tests the summary lists.")
@click.option("--max-annotations", type=int, default=50, show_default=True, envvar="STACKCI_MAX_ANNOTATIONS",
              help="At most this many failure annotations.")
@click.option("--from-junit", type=click.Path(path_type=Path, dir_okay=False), envvar="STACKCI_FROM_JUNIT",
              help="Do not run pytest: report an existing JUnit XML file (any test runner).")
@click.option("--dry-run", is_flag=True, envvar="STACKCI_DRY_RUN", help="Check the inputs and print what would run.")
@click.pass_obj
def command(app: App, **kwargs) -> None:
    """Run the project's pytest suite, publish JUnit XML, annotate failures.

    Outputs: passed failed skipped errors tests duration junit-xml [coverage coverage-xml].
    Exit 1 when a test fails or errors, or when no tests are collected (unless --allow-no-tests).
    """
    run(app, Options(**kwargs))
