from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stackci import junit
from stackci.errors import ConfigError


def pytest_junit(project: Path, family: str) -> Path:
    out = project / "report.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={out}",
                    "-o", f"junit_family={family}"], cwd=project, capture_output=True)
    return out


SOURCE = {
    "tests/test_sample.py": (
        "import pytest\n"
        "\n"
        "def check(x):\n"
        "    assert x == 1, 'x should be one'\n"
        "\n"
        "def test_ok():\n"
        "    pass\n"
        "\n"
        "def test_fails():\n"
        "    check(2)\n"
        "\n"
        "@pytest.mark.skip(reason='not today')\n"
        "def test_skipped():\n"
        "    pass\n"
        "\n"
        "class TestGroup:\n"
        "    @pytest.fixture\n"
        "    def broken(self):\n"
        "        raise RuntimeError('fixture broke')\n"
        "\n"
        "    def test_errors(self, broken):\n"
        "        pass\n"
    ),
}


@pytest.mark.parametrize("family", ["xunit1", "xunit2"])
def test_reads_what_pytest_writes(make_project, family):
    report = junit.parse(pytest_junit(make_project(SOURCE), family))
    assert (report.total, report.passed, report.failed, report.errors, report.skipped) == (4, 1, 1, 1, 1)
    failed = next(c for c in report.cases if c.status == junit.FAILED)
    assert failed.name == "test_fails"
    assert "x should be one" in failed.message
    errored = next(c for c in report.cases if c.status == junit.ERROR)
    assert "fixture broke" in errored.message + errored.text
    assert report.duration > 0


def test_xunit1_gives_the_failing_line_and_a_pytest_style_id(make_project):
    report = junit.parse(pytest_junit(make_project(SOURCE), "xunit1"))
    failed = next(c for c in report.cases if c.status == junit.FAILED)
    assert failed.test_id == "tests/test_sample.py::test_fails"
    assert failed.failure_location() == ("tests/test_sample.py", 4)   # the assert inside check()
    errored = next(c for c in report.cases if c.status == junit.ERROR)
    assert errored.test_id == "tests/test_sample.py::TestGroup::test_errors"
    assert errored.line == 21


def test_single_testsuite_root_and_nested_suites():
    data = b"""<?xml version="1.0"?>
    <testsuites time="3.5">
      <testsuite name="outer"><testsuite name="inner" time="1">
        <testcase name="a" classname="x" time="0.5"/>
        <testcase name="b" classname="x"><failure message="boom">trace</failure></testcase>
      </testsuite></testsuite>
    </testsuites>"""
    report = junit.parse_bytes(data)
    assert [c.status for c in report.cases] == [junit.PASSED, junit.FAILED]
    assert report.duration == 3.5
    single = junit.parse_bytes(b'<testsuite time="2"><testcase name="a"/></testsuite>')
    assert single.total == 1 and single.duration == 2.0


@pytest.mark.parametrize("data, words", [
    (b"<testsuites><testcase", "malformed JUnit XML"),
    (b"not xml at all", "malformed JUnit XML"),
    (b"<html><body/></html>", "not JUnit"),
])
def test_malformed_files_are_configuration_errors(data, words, tmp_path):
    path = tmp_path / "bad.xml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        junit.parse(path)
    assert words in info.value.one_line() and "bad.xml" in info.value.one_line()
    assert "\n" not in info.value.one_line()


def test_missing_file_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read JUnit file"):
        junit.parse(tmp_path / "nope.xml")


def test_write_round_trips_including_control_characters(tmp_path):
    cases = [junit.Case(name="job/train", classname="training", time=1.25),
             junit.Case(name="job/validate", classname="training", time=2, status=junit.FAILED,
                        message="AUC too low \x1b[31m", text="Traceback\n  ValueError: <&>"),
             junit.Case(name="job/deploy", classname="training", status=junit.SKIPPED, message="upstream failed")]
    path = junit.write(tmp_path / "out" / "r.xml", "integration", cases, redact=str)
    back = junit.parse(path)
    assert [(c.name, c.status) for c in back.cases] == [(c.name, c.status) for c in cases]
    assert back.cases[1].text == "Traceback\n  ValueError: <&>"
    assert back.cases[1].message == "AUC too low \ufffd[31m"
    assert back.duration == pytest.approx(3.25)


def test_write_redacts_every_name_message_and_trace(tmp_path):
    from stackci.ci import LocalPlatform

    platform = LocalPlatform({})
    platform.mask("s3cr3t<&>")
    cases = [junit.Case(name="task s3cr3t<&>", classname="job s3cr3t<&>", status=junit.FAILED,
                        message="bad s3cr3t<&>", text="trace s3cr3t<&>\nline 2")]
    path = junit.write(tmp_path / "r.xml", "suite s3cr3t<&>", cases, redact=platform.redact)
    raw = path.read_text()
    assert "s3cr3t" not in raw
    case = junit.parse(path).cases[0]
    assert (case.name, case.classname, case.message, case.text) == ("task ***", "job ***", "bad ***",
                                                                    "trace ***\nline 2")


def test_redact_file_rewrites_only_what_holds_a_secret(tmp_path):
    path = tmp_path / "pytest.xml"
    path.write_text('<testsuites><testsuite name="s"><testcase name="t" classname="c">'
                    '<failure message="tok&amp;en=abc&lt;1">trace abc&lt;1</failure>'
                    '<system-out>printed abc&lt;1</system-out></testcase></testsuite></testsuites>')
    redact = lambda text: text.replace("abc<1", "***")   # noqa: E731
    assert junit.redact_file(path, redact, ("abc<1",)) is True
    assert "abc" not in path.read_text()
    case = junit.parse(path).cases[0]
    assert case.message == "tok&en=***" and case.text == "trace ***"
    before = path.read_bytes()
    assert junit.redact_file(path, redact, ("abc<1",)) is False and path.read_bytes() == before
    assert junit.redact_file(path, redact, ()) is False
