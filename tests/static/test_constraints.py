"""scripts/constraints.txt, the exact versions install-toolkit.sh installs stackci's
dependencies at, against pyproject.toml: every runtime dependency is pinned, each pin is
one exact version inside pyproject's range. (tests/e2e/test_toolkit.py checks a real
install against it, and that the generator writes the file as it is.)"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "scripts" / "constraints.txt"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> list[Requirement]:
    return [Requirement(line) for line in CONSTRAINTS.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_every_pin_is_one_exact_version():
    found = pins()
    assert len(found) >= 10
    for pin in found:
        [spec] = list(pin.specifier)
        assert spec.operator == "==" and "*" not in spec.version, pin
        Version(spec.version)
        assert not pin.extras and pin.url is None, pin
    # at most one pin per package for any one Python
    for python in ("3.10", "3.11", "3.12", "3.13", "3.14"):
        env = {"python_version": python, "python_full_version": f"{python}.0"}
        names = [canonical(p.name) for p in found if p.marker is None or p.marker.evaluate(env)]
        assert len(names) == len(set(names)), (python, names)


def test_the_pins_satisfy_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    by_name: dict[str, list[Requirement]] = {}
    for pin in pins():
        by_name.setdefault(canonical(pin.name), []).append(pin)
    for line in project["dependencies"]:
        dep = Requirement(line)
        assert canonical(dep.name) in by_name, f"{dep.name} is a dependency but has no pin"
        for pin in by_name[canonical(dep.name)]:
            version = next(iter(pin.specifier)).version
            assert dep.specifier.contains(version, prereleases=True), \
                f"{pin} is outside pyproject's {dep}: run scripts/update-constraints.py"

