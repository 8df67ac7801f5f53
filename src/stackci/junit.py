"""JUnit XML: read what pytest (or any JUnit producer) wrote; write our own reports.

Accepts a ``<testsuites>`` or a single ``<testsuite>`` root, nested suites, and
the attributes pytest writes in both families (``xunit1`` adds ``file``/``line``).
"""

from __future__ import annotations

import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import ConfigError

PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"

# "tests/test_x.py:12: AssertionError" — the location line pytest prints under a failure
_LOCATION = re.compile(r"^(?P<file>[^\s:][^:\n]*?\.py):(?P<line>\d+):", re.MULTILINE)


@dataclass
class Case:
    name: str
    classname: str = ""
    file: str | None = None
    line: int | None = None          # 1-based
    time: float = 0.0
    status: str = PASSED
    message: str = ""
    text: str = ""

    @property
    def test_id(self) -> str:
        """``tests/test_x.py::TestA::test_b`` where the file is known, else ``classname.name``."""
        if self.file:
            module = self.file[:-3].replace("/", ".") if self.file.endswith(".py") else self.file
            rest = self.classname[len(module) + 1:] if self.classname.startswith(module + ".") else ""
            return "::".join(p for p in (self.file, rest, self.name) if p)
        return f"{self.classname}.{self.name}" if self.classname else self.name

    def failure_location(self) -> tuple[str | None, int | None]:
        """Where it failed: the last ``file.py:N:`` line of the trace in the test's file, else the test."""
        hits = list(_LOCATION.finditer(self.text or ""))
        if self.file:
            own = [m for m in hits if Path(m["file"]).as_posix().endswith(Path(self.file).as_posix())
                   or Path(self.file).as_posix().endswith(Path(m["file"]).as_posix())]
            if own:
                return self.file, int(own[-1]["line"])
        if hits and not self.file:
            return hits[-1]["file"], int(hits[-1]["line"])
        return self.file, self.line


@dataclass
class Report:
    cases: list[Case] = field(default_factory=list)
    duration: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for c in self.cases if c.status == status)

    @property
    def passed(self) -> int:
        return self.count(PASSED)

    @property
    def failed(self) -> int:
        return self.count(FAILED)

    @property
    def errors(self) -> int:
        return self.count(ERROR)

    @property
    def skipped(self) -> int:
        return self.count(SKIPPED)

    @property
    def total(self) -> int:
        return len(self.cases)

    @property
    def problems(self) -> list[Case]:
        return [c for c in self.cases if c.status in (FAILED, ERROR)]

    def slowest(self, n: int) -> list[Case]:
        return sorted((c for c in self.cases if c.status != SKIPPED), key=lambda c: -c.time)[:n]


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else 0.0
    except ValueError:
        return 0.0


def _case(el: ET.Element) -> Case:
    line = el.get("line")
    case = Case(name=el.get("name", ""), classname=el.get("classname", ""), file=el.get("file") or None,
                # pytest's xunit1 ``line`` is 0-based
                line=int(line) + 1 if line and line.strip().isdigit() else None,
                time=_float(el.get("time")))
    for tag, status in (("failure", FAILED), ("error", ERROR), ("skipped", SKIPPED)):
        child = el.find(tag)
        if child is not None:
            case.status = status
            case.message = child.get("message", "") or ""
            case.text = child.text or ""
            break
    return case


def parse(path: Path) -> Report:
    """Read a JUnit XML file; a file that is not JUnit is a ConfigError naming it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read JUnit file {str(path)!r}: {exc.strerror or exc}",
                          hint="check the path given with --from-junit / --junit-xml") from None
    return parse_bytes(data, source=str(path))


def parse_bytes(data: bytes, source: str = "<junit>") -> Report:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ConfigError(f"malformed JUnit XML in {source!r}: {exc}",
                          hint="the file must be JUnit XML as written by pytest --junitxml") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise ConfigError(f"{source!r} is XML but not JUnit: its root is <{root.tag}>",
                          hint="expected <testsuites> or <testsuite>")
    report = Report(cases=[_case(el) for el in root.iter("testcase")])
    if root.get("time"):
        report.duration = _float(root.get("time"))
    else:
        report.duration = sum(_float(s.get("time")) for s in root.findall("testsuite"))
    if not report.duration:
        report.duration = sum(c.time for c in report.cases)
    return report


def write(path: Path, suite_name: str, cases: list[Case], *, redact: Callable[[str], str],
          timestamp: str | None = None) -> Path:
    """Write ``cases`` as one JUnit test suite (used by blocks that report remote runs).

    ``redact`` (the platform's) is applied to every name, message and trace: a report is a file
    that is uploaded and kept, and must never hold a secret the log shows as ``***``."""
    cases = [Case(name=redact(c.name), classname=redact(c.classname), file=c.file, line=c.line, time=c.time,
                  status=c.status, message=redact(c.message), text=redact(c.text)) for c in cases]
    suite_name = redact(suite_name)
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", name=suite_name, tests=str(len(cases)),
                          failures=str(sum(c.status == FAILED for c in cases)),
                          errors=str(sum(c.status == ERROR for c in cases)),
                          skipped=str(sum(c.status == SKIPPED for c in cases)),
                          time=f"{sum(c.time for c in cases):.3f}")
    if timestamp:
        suite.set("timestamp", timestamp)
    for case in cases:
        attrs = {"name": case.name, "classname": case.classname or suite_name, "time": f"{case.time:.3f}"}
        if case.file:
            attrs["file"] = case.file
        el = ET.SubElement(suite, "testcase", attrs)
        if case.status in (FAILED, ERROR, SKIPPED):
            child = ET.SubElement(el, {FAILED: "failure", ERROR: "error", SKIPPED: "skipped"}[case.status])
            if case.message:
                child.set("message", _xml_safe(case.message))
            if case.text:
                child.text = _xml_safe(case.text)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
    return path


def redact_file(path: Path, redact: Callable[[str], str], secrets: tuple[str, ...]) -> bool:
    """Replace every secret in a JUnit file someone else wrote (pytest's) by ``***``, in place:
    every attribute and text of every element, so a secret escaped as XML is found too.
    Returns whether the file changed; a file that is not XML is left to :func:`parse` to report."""
    if not secrets:
        return False
    path = Path(path)
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError):
        return False
    changed = False
    for el in tree.iter():
        for key, value in list(el.attrib.items()):
            clean = redact(value)
            if clean != value:
                el.set(key, clean)
                changed = True
        for attr in ("text", "tail"):
            value = getattr(el, attr)
            if value:
                clean = redact(value)
                if clean != value:
                    setattr(el, attr, clean)
                    changed = True
    if changed:
        tmp = path.with_name(f".{path.name}.redacted")
        tree.write(tmp, encoding="utf-8", xml_declaration=True)
        tmp.replace(path)
    return changed


def ci_report_folder(environ) -> Path | None:
    """``$RUNNER_TEMP/stackci`` on GitHub, ``$AGENT_TEMPDIRECTORY/stackci`` on Azure, else None."""
    base = environ.get("RUNNER_TEMP") or environ.get("AGENT_TEMPDIRECTORY")
    return Path(base) / "stackci" if base else None


def report_folder(environ) -> tuple[Path, bool]:
    """Where a block writes its reports when not told: the CI runner's temporary folder, else a new
    temporary folder (never the checkout, where a report would be committed or deployed with the
    bundle's files). Returns (folder, whether it is a new temporary folder the user must be told of)."""
    folder = ci_report_folder(environ)
    if folder is not None:
        return folder, False
    return Path(tempfile.mkdtemp(prefix="stackci-reports-")), True


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    return _XML_BAD.sub("\ufffd", text)
