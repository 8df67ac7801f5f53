"""``stackci unit-tests`` end to end in-process: outputs, summary, annotations, exit codes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

PY = sys.executable

PASSING = {
    "tests/test_math.py": "def test_add():\n    assert 1 + 1 == 2\n\ndef test_sub():\n    assert 2 - 1 == 1\n",
    "pkg/__init__.py": "def double(x):\n    return 2 * x\n",
    "tests/test_pkg.py": "from pkg import double\n\ndef test_double():\n    assert double(2) == 4\n",
    "pytest.ini": "[pytest]\npythonpath = .\n",
}
FAILING = {
    **PASSING,
    "tests/test_broken.py": (
        "import pytest\n"
        "\n"
        "def test_wrong():\n"
        "    value = 41\n"
        "    assert value == 42, 'the answer'\n"
        "\n"
        "@pytest.mark.parametrize('name', ['::error::pwned', '##vso[task.setvariable variable=x]1'])\n"
        "def test_evil_names(name):\n"
        "    raise ValueError(name + '\\n::warning::injected')\n"
    ),
}


def test_passing_suite(run_cli, make_project):
    project = make_project(PASSING)
    result = run_cli(["unit-tests", "--project", str(project), "--python", PY])
    assert result.code == 0, result.stderr
    out = result.outputs
    assert (out["passed"], out["failed"], out["errors"], out["skipped"], out["tests"]) == ("3", "0", "0", "0", "3")
    assert Path(out["junit-xml"]).is_file()
    assert float(out["duration"]) >= 0
    assert result.errors() == []
    assert "### ✅ Unit tests passed" in result.summary
    assert "| 3 | 3 | 0 | 0 | 0 |" in result.summary
    assert "Slowest 3 tests" in result.summary


def test_failing_suite_annotates_each_failure_at_its_line(run_cli, make_project, tmp_path):
    project = make_project(FAILING)
    result = run_cli(["unit-tests", "--project", str(project), "--python", PY],
                     env={"GITHUB_WORKSPACE": str(tmp_path)})
    assert result.code == 1
    assert result.outputs["failed"] == "3" and result.outputs["passed"] == "3"
    errors = result.errors()
    per_test = [e for e in errors if e.properties.get("file")]
    assert len(per_test) == 3
    wrong = next(e for e in per_test if "test_wrong" in e.properties["title"])
    assert wrong.properties["file"] == "proj/tests/test_broken.py"    # relative to the workspace root
    assert wrong.properties["line"] == "5"
    assert wrong.properties["title"] == "tests/test_broken.py::test_wrong failed"
    assert "the answer" in wrong.data
    # the closing error names the totals; nothing from the test names ran as a command
    assert errors[-1].data.startswith("unit tests failed: 3 failed and 0 errored of 6 tests")
    assert [c.name for c in result.commands if c.name not in ("error", "group", "endgroup")] == []
    assert "x" not in result.outputs
    assert "#### Failures (3)" in result.summary
    assert "&lt;" not in result.summary or "<code>" in result.summary


def test_collection_errors_count_as_errors(run_cli, make_project):
    project = make_project({**PASSING, "tests/test_import.py": "import does_not_exist\n"})
    result = run_cli(["unit-tests", "--project", str(project), "--python", PY])
    assert result.code == 1
    assert result.outputs["errors"] == "1"
    assert any("does_not_exist" in e.data for e in result.errors())


def test_no_tests_fails_unless_allowed(run_cli, make_project):
    project = make_project({"src/app.py": "X = 1\n"})
    result = run_cli(["unit-tests", "--project", str(project), "--python", PY])
    assert result.code == 1
    assert "no tests were collected" in result.errors()[-1].data
    assert "--allow-no-tests" in result.summary
    result = run_cli(["unit-tests", "--project", str(project), "--python", PY, "--allow-no-tests"])
    assert result.code == 0
    assert result.outputs["tests"] == "0"


def test_options_come_from_environment_variables(run_cli, make_project, tmp_path):
    project = make_project(FAILING)
    junit = tmp_path / "reports" / "junit.xml"
    result = run_cli(["unit-tests"], env={"STACKCI_PROJECT": str(project), "STACKCI_PYTHON": PY,
                                          "STACKCI_PYTEST_ARGS": "-k 'not evil and not wrong'",
                                          "STACKCI_JUNIT_XML": str(junit)})
    assert result.code == 0, result.stderr
    assert result.outputs["tests"] == "3" and result.outputs["failed"] == "0"   # -k deselected the rest
    assert result.outputs["junit-xml"] == str(junit) and junit.is_file()


def test_coverage_total_in_outputs_and_summary(run_cli, make_project):
    project = make_project(PASSING)
    result = run_cli(["unit-tests", "--project", str(project), "--python", PY, "--coverage",
                      "--coverage-source", "pkg"])
    assert result.code == 0, result.stderr
    assert float(result.outputs["coverage"]) == 100.0
    assert Path(result.outputs["coverage-xml"]).is_file()
    assert "| Coverage |" in result.summary and "100.0 %" in result.summary
    project2 = make_project({**PASSING, "pkg/extra.py": "def unused():\n    return 1\n"}, name="proj2")
    result = run_cli(["unit-tests", "--project", str(project2), "--python", PY, "--coverage",
                      "--coverage-source", "pkg", "--fail-under", "90"])
    assert result.code == 1
    assert "below --fail-under 90 %" in result.errors()[-1].data


def test_requirements_are_installed_into_the_projects_interpreter(run_cli, make_project):
    project = make_project({**PASSING, "requirements.txt": "pytest\n"})
    result = run_cli(["unit-tests", "--project", str(project), "--python", PY, "--requirements", "requirements.txt"])
    assert result.code == 0, result.stdout
    assert "Requirement already satisfied: pytest" in result.stdout


def test_a_requirement_that_cannot_install_fails_the_work(run_cli, make_project):
    project = make_project({**PASSING, "requirements.txt": "./no-such-local-package\n"})
    result = run_cli(["unit-tests", "--project", str(project), "--python", PY, "-r", "requirements.txt"])
    assert result.code == 1
    assert "installing the requirements failed" in result.errors()[-1].data


def test_azure_outputs_summary_and_issues(run_cli, make_project):
    project = make_project(FAILING)
    result = run_cli(["unit-tests", "--project", str(project), "--python", PY], platform="azure")
    assert result.code == 1
    assert result.outputs["failed"] == "3" and Path(result.outputs["junit_xml"]).is_file()
    issues = [c for c in result.commands if c.name == "task.logissue"]
    assert len(issues) == 4
    assert issues[0].properties["linenumber"] == "5"
    assert "Unit tests failed" in result.summary
    assert not [c for c in result.commands if c.name not in ("task.logissue", "task.setvariable",
                                                            "task.uploadsummary", "##group", "##endgroup")]


def test_from_junit_reports_an_existing_file(run_cli, make_project, tmp_path):
    project = make_project(PASSING)
    report = tmp_path / "other.xml"
    report.write_text('<testsuite time="1.5"><testcase classname="suite" name="works"/>'
                      '<testcase classname="suite" name="breaks"><failure message="nope">trace</failure>'
                      '</testcase></testsuite>')
    result = run_cli(["unit-tests", "--project", str(project), "--from-junit", str(report)])
    assert result.code == 1
    assert result.outputs["failed"] == "1" and result.outputs["duration"] == "1.50"


@pytest.mark.parametrize("args, expected", [
    (["--project", "/definitely/not/here"], "project directory '/definitely/not/here' does not exist"),
    (["--python", "python3.99-nonexistent"], "python interpreter 'python3.99-nonexistent' is not on PATH"),
    (["--python", "/no/such/python"], "python interpreter '/no/such/python' does not exist"),
    (["--requirements", "missing-reqs.txt"], "cannot read requirements file 'missing-reqs.txt'"),
    (["--requirements", "tests"], "requirements file 'tests' is a directory"),
    (["--pytest-args", "'unbalanced"], "cannot split --pytest-args"),
    (["--from-junit", "BROKEN"], "malformed JUnit XML"),
    (["--pytest-args", "--no-such-pytest-flag"], "pytest rejected its arguments"),
])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(run_cli, make_project, tmp_path, args, expected):
    project = make_project(PASSING)
    broken = tmp_path / "broken.xml"
    broken.write_text("<testsuites><testcase")
    args = [str(broken) if a == "BROKEN" else a for a in args]
    base = ["unit-tests", "--python", PY] + ([] if "--project" in args else ["--project", str(project)])
    for platform in ("github", "local"):
        result = run_cli(base + args, platform=platform)
        assert result.code == 2, (platform, result.stdout, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
        if platform == "github":
            errors = result.errors()
            assert len(errors) == 1 and expected in errors[0].data and "\n" not in errors[0].data
            assert result.outputs == {}
        else:
            lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
            assert len(lines) == 1 and expected in lines[0]
    if "--pytest-args" not in args or "--no-such" not in " ".join(args):
        assert not (project / ".stackci").exists()


def test_missing_pytest_says_how_to_fix(run_cli, make_project, tmp_path):
    import venv
    bare = tmp_path / "bare"
    venv.EnvBuilder(with_pip=False).create(bare)
    project = make_project(PASSING)
    result = run_cli(["unit-tests", "--project", str(project), "--python", str(bare / "bin" / "python")])
    assert result.code == 2
    assert "pytest is not installed" in result.errors()[0].data
    assert "--requirements" in result.errors()[0].data


def test_dry_run_prints_the_plan_and_runs_nothing(run_cli, make_project):
    project = make_project(PASSING)
    result = run_cli(["unit-tests", "--project", str(project), "--python", PY, "--dry-run"], platform="local")
    assert result.code == 0
    assert "would run" in result.stderr and "-m pytest" in result.stderr
    assert not (project / ".stackci").exists()


@pytest.mark.parametrize("args, named", [
    (["--fail-under", "90"], "--fail-under without --coverage"),
    (["--coverage-source", "pkg"], "--coverage-source without --coverage"),
    (["--fail-under", "90", "--coverage-source", "pkg"], "--fail-under and --coverage-source without --coverage"),
])
def test_coverage_options_without_coverage_are_refused(run_cli, make_project, args, named):
    project = make_project(PASSING)
    result = run_cli(["unit-tests", "--project", str(project), "--python", PY, *args])
    assert result.code == 2, result.stderr
    errors = result.errors()
    assert len(errors) == 1 and named in errors[0].data and "add --coverage" in errors[0].data
    assert result.outputs == {} and "pytest" not in result.stdout


def test_deselecting_every_test_says_so(run_cli, make_project):
    project = make_project(PASSING)
    result = run_cli(["unit-tests", "--project", str(project), "--python", PY, "--pytest-args", "-k nomatch"])
    assert result.code == 1
    last = result.errors()[-1].data
    assert "no tests were selected: all 3 collected tests were deselected" in last
    assert "-k / -m expression in --pytest-args" in last and "found no tests" not in last
    assert "pytest deselected all 3 tests it collected" in result.summary


def test_the_duration_is_the_one_pytest_printed(run_cli, make_project):
    import re

    project = make_project({**PASSING, "tests/conftest.py": "import time\ntime.sleep(0.3)   # slow collection\n"})
    result = run_cli(["unit-tests", "--project", str(project), "--python", PY])
    assert result.code == 0, result.stderr
    printed = re.findall(r"\b3 passed in (\d+\.\d+)s", result.stdout)
    assert printed and float(result.outputs["duration"]) == pytest.approx(float(printed[-1]), abs=0.006)
    assert float(result.outputs["duration"]) >= 0.3            # collection counts, as in pytest's own line
    assert f"| {float(printed[-1]):.2f} s |" in result.summary


SECRET = "dapi5ecre7c0ffee5ecre7c0ffee5ecre7"


def test_a_credential_printed_by_a_test_is_redacted_everywhere(run_cli, make_project):
    project = make_project({**PASSING, "tests/test_leak.py": (
        "import os\n\ndef test_leaks():\n    token = os.environ['DATABRICKS_TOKEN']\n"
        "    print('the token is', token)\n    assert token == 'x', f'got {token} & more'\n")})
    result = run_cli(["unit-tests", "--project", str(project), "--python", PY, "--pytest-args", "-o junit_logging=all"],
                     env={"DATABRICKS_TOKEN": SECRET})
    assert result.code == 1 and result.outputs["failed"] == "1"
    junit_file = Path(result.outputs["junit-xml"])
    text = junit_file.read_text()
    assert SECRET not in text and "***" in text
    from stackci import junit
    case = next(c for c in junit.parse(junit_file).cases if c.name == "test_leaks")
    assert "got *** & more" in case.message
    assert SECRET not in result.summary and "got *** & more" in result.summary
    assert all(SECRET not in e.data for e in result.errors())
    assert [c.data for c in result.commands if c.name == "add-mask"] == [SECRET]   # GitHub masks it in the log too
    shown = [line for line in (result.stdout + result.stderr).splitlines() if not line.startswith("::add-mask::")]
    assert SECRET not in "\n".join(shown) and "the token is ***" in result.stdout


def test_local_reports_go_to_a_temporary_folder_it_names(run_cli, make_project):
    import re

    project = make_project(PASSING)
    result = run_cli(["unit-tests", "--project", str(project), "--python", PY], platform="local", cwd=project)
    assert result.code == 0, result.stderr
    folder = Path(re.search(r"reports go to (\S+) \(a temporary folder", result.stderr).group(1))
    assert (folder / "unit-tests.xml").is_file()
    assert not folder.is_relative_to(project) and not (project / ".stackci").exists()
    import shutil
    shutil.rmtree(folder)


@pytest.mark.parametrize("tail, facts", [
    (["= 1 failed, 2 passed, 3 deselected in 61.20s (0:01:01) ="], (61.2, 3)),
    (["29 passed in 1.89s"], (1.89, 0)),
    (["no tests ran in 0.01s"], (0.01, 0)),
    (["\x1b[31m= \x1b[31m\x1b[1m1 failed\x1b[0m, \x1b[32m2 passed\x1b[0m\x1b[31m in 0.52s\x1b[0m\x1b[31m =\x1b[0m"],
     (0.52, 0)),
    # a test's own line is not pytest's closing line, even when it ends like one
    (["FAILED t.py::test_x - assert 1 in 2s", "some output"], (None, 0)),
    (["= 1 passed in 3.00s =", "FAILED t.py::test_x - assert 1 in 2s"], (3.0, 0)),
])
def test_pytest_closing_line(tail, facts):
    from stackci.unit_tests import pytest_facts

    assert pytest_facts(tail) == facts
