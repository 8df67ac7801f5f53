"""Wall time of ``stackci rehearse`` and how much of it is stackci's own, side by side.

    python benchmarks/rehearse.py [--runs 3] [--project examples/project] [--scale 1,10]

Each measured run is a fresh process that runs ``stackci rehearse`` through the console
script's entry point (``stackci.__main__:run``), so interpreter start-up and the exit path
(atexit handlers, the interpreter's teardown) are included. Inside it, every child process is
timed from its start to its exit (a ``subprocess.Popen`` subclass and ``waitid(WNOWAIT)``, so
nothing is reaped early), and so is every stage:

* the user's tests: the ``python -m pytest`` process of the unit-tests stage;
* the user's jobs: the task processes the local workspace starts (``_runtime.py``);

and the union of those intervals is the user's time. The rest of the wall time, when
none of the user's processes was running, is stackci's own share: start-up, git, the
local workspace, deploys, waiting for runs to be noticed, reports. Target: stackci's
share <= 20 %. A first, unmeasured run creates the project's cached virtual environment.

``--scale 10`` also measures a copy whose training job trains on ten times the rows (the
example's jobs take well under a second; real ones take minutes), which shows how much of
stackci's time is a fixed cost. The target applies to the project as it is (scale 1).

Prints the medians per run, and per stage the wall time, the user's part of it and stackci's
(plus start-up before the first stage and the report, clean-up and exit after the last);
exits 1 when the target is missed.

A control keeps the split honest: stackci imports databricks-sdk and starts the local workspace
in the background while the user's pytest runs, and on a busy machine that slows the tests.
After every run the same pytest command runs alone in a fresh copy of the project; the report
shows both times and the share stackci would have if the difference were counted as its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SHARE = 0.20


# --------------------------------------------------------------------------- inside the measured process
def child(out_path: str, argv: list[str]) -> int:
    """``stackci rehearse ARGV`` through the console script's own entry point (``run``: its exit
    path included), with every child process and every stage timed."""
    import threading

    records: list[dict] = []
    stages: list[dict] = []
    base = subprocess.Popen

    class Timed(base):  # type: ignore[misc, valid-type]
        def __init__(self, args, *a, **k):
            started = time.monotonic()
            super().__init__(args, *a, **k)
            record = {"argv": [str(x) for x in (args if isinstance(args, (list, tuple)) else [args])],
                      "start": started, "end": None}
            records.append(record)
            pid = self.pid

            def watch() -> None:
                try:
                    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
                except ChildProcessError:   # reaped first by the caller's wait(): it has just ended
                    pass
                record["end"] = time.monotonic()
            threading.Thread(target=watch, daemon=True).start()

    subprocess.Popen = Timed  # type: ignore[misc]

    from stackci.rehearse import flow

    def timed(key: str, step):
        def wrapper(self, stage):
            stages.append({"key": key, "start": time.monotonic(), "end": None})
            try:
                return step(self, stage)
            finally:
                stages[-1]["end"] = time.monotonic()
        return wrapper

    for key, method in (("setup", "setup"), ("unit-tests", "unit_tests"), ("validate", "validate"),
                        ("integration-test", "integration_test"), ("deploy-staging", "deploy_staging"),
                        ("cut-release", "cut_release"), ("deploy-prod", "deploy_prod"), ("smoke-run", "smoke_run")):
        setattr(flow.Rehearsal, method, timed(key, getattr(flow.Rehearsal, method)))

    import atexit

    def save() -> None:
        # the last thing before the interpreter's own teardown (atexit runs last-registered first)
        ended = time.monotonic()
        for record in records:
            record["end"] = record["end"] or ended
        Path(out_path).write_text(json.dumps({"processes": records, "stages": stages}))

    atexit.register(save)
    from stackci.__main__ import run

    sys.argv = ["stackci", "rehearse", *argv]
    run()                                   # raises SystemExit, as the console script does
    return 0


# --------------------------------------------------------------------------- the measurement
def kind(argv: list[str]) -> str:
    if any(a.endswith("_runtime.py") for a in argv):
        return "jobs"
    if "-m" in argv and argv[argv.index("-m") + 1:argv.index("-m") + 2] == ["pytest"]:
        return "tests"
    return "other"


def union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def within(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    """How long, between ``start`` and ``end``, at least one of ``intervals`` was going on."""
    return union([(max(a, start), min(b, end)) for a, b in intervals if min(b, end) > max(a, start)])


#: the stages of a rehearsal, in order (benchmark rows; "outside" rows are added around them)
STAGE_KEYS = ("setup", "unit-tests", "validate", "integration-test", "deploy-staging", "cut-release", "deploy-prod",
              "smoke-run")


def scaled_copy(project: Path, scale: int, tmp: Path) -> Path:
    import re
    import shutil

    if scale == 1:
        return project
    copy = tmp / f"project-x{scale}"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", ".stackci"))
    resource = copy / "resources" / "model-workflow-resource.yml"
    text = resource.read_text()
    text, count = re.subn(r'training_rows: "(\d+)"', lambda m: f'training_rows: "{int(m.group(1)) * scale}"', text)
    if count != 1:
        raise SystemExit(f"cannot scale {resource}: no training_rows parameter")
    resource.write_text(text)
    return copy


def one_run(project: Path, cache: Path, tmp: Path, n: int) -> dict:
    out = tmp / f"records-{n}.json"
    argv = [str(project), "--cache-dir", str(cache), "-o", "json"]
    started = time.monotonic()
    proc = subprocess.run([sys.executable, __file__, "--child", str(out), "--", *argv], capture_output=True,
                          text=True, cwd=tmp)
    ended = time.monotonic()
    wall = ended - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"rehearse exited {proc.returncode}")
    data = json.loads(out.read_text())
    records = data["processes"]
    by_kind = {k: [(max(r["start"], started), r["end"]) for r in records if kind(r["argv"]) == k]
               for k in ("tests", "jobs")}
    tests, jobs = union(by_kind["tests"]), union(by_kind["jobs"])
    users = by_kind["tests"] + by_kind["jobs"]
    user = union(users)
    report = json.loads(proc.stdout)
    # per stage: its wall time, and how much of it a user's process was running
    windows = {s["key"]: (s["start"], s["end"]) for s in data["stages"]}
    rows: dict[str, tuple[float, float]] = {}
    first = windows[STAGE_KEYS[0]][0]
    last = max(end for _, end in windows.values())
    rows["start-up (to stage 0)"] = (first - started, within(users, started, first))
    for key in STAGE_KEYS:
        if key in windows:
            a, b = windows[key]
            rows[key] = (b - a, within(users, a, b))
    inside = sum(b - a for a, b in windows.values())
    rows["between stages"] = ((last - first) - inside, within(users, first, last) - sum(
        within(users, a, b) for a, b in windows.values()))
    rows["report, clean-up, exit"] = (ended - last, within(users, last, ended))
    alone = tests_alone(project, next(r["argv"] for r in records if kind(r["argv"]) == "tests"), tmp)
    return {"wall": wall, "tests": tests, "jobs": jobs, "user": user, "stackci": wall - user, "alone": alone,
            "processes": len(records), "task_processes": len(by_kind["jobs"]),
            "git": sum(1 for r in records if Path(r["argv"][0]).name == "git"), "rows": rows,
            "stages": {s["title"]: s["duration"] for s in report["stages"]}}


def tests_alone(project: Path, argv: list[str], tmp: Path) -> float:
    """The control: the same pytest command, right after the rehearsal, on its own in a fresh copy
    of the project (no caches, as in the rehearsal's checkout). A rehearsal's pytest that takes
    longer than this was slowed by what ran beside it (stackci's background work, or the machine)."""
    import shutil

    copy = tmp / "alone"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", ".stackci"))
    argv = [f"--junitxml={tmp / 'alone.xml'}" if a.startswith("--junitxml=") else a for a in argv]
    started = time.monotonic()
    subprocess.run(argv, cwd=copy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.monotonic() - started


def measure(project: Path, label: str, runs_wanted: int, cache: Path, tmp: Path) -> float:
    runs = []
    for n in range(1, runs_wanted + 1):
        runs.append(one_run(project, cache, tmp, n))
        r = runs[-1]
        print(f"{label} run {n}/{runs_wanted}: wall {r['wall']:.2f} s, user {r['user']:.2f} s, "
              f"stackci {r['stackci']:.2f} s ({r['stackci'] / r['wall']:.0%})", file=sys.stderr)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    wall, user, own = med("wall"), med("user"), med("stackci")
    print(f"\nstackci rehearse {label}: median of {len(runs)} runs ({runs[0]['processes']} child processes: "
          f"{runs[0]['task_processes']} job tasks, {runs[0]['git']} git)\n")
    print(f"  {'':34} {'seconds':>8} {'of wall':>8}")
    for name, value in (("wall time (whole command)", wall), ("user's tests (pytest process)", med("tests")),
                        ("user's jobs (task processes)", med("jobs")), ("user's tests and jobs", user),
                        ("stackci itself (everything else)", own)):
        print(f"  {name:34} {value:8.2f} {value / wall:8.0%}")
    print(f"\n  stackci : user = {own / user:.2f} : 1; stackci's share {own / wall:.0%}")
    slowed = statistics.median(max(0.0, r["tests"] - r["alone"]) for r in runs)
    print(f"  control: the same pytest alone took {med('alone'):.2f} s (in the rehearsal {med('tests'):.2f} s); "
          f"counting the difference as stackci's, its share is "
          f"{statistics.median((r['stackci'] + max(0.0, r['tests'] - r['alone'])) / r['wall'] for r in runs):.0%}"
          f" ({slowed:.2f} s)")
    print(f"\n  where the time goes (median seconds){'':8} {'wall':>6} {'user':>6} {'stackci':>8} {'of stackci':>10}")
    for name in runs[0]["rows"]:
        w = statistics.median(r["rows"][name][0] for r in runs)
        u = statistics.median(r["rows"][name][1] for r in runs)
        o = statistics.median(r["rows"][name][0] - r["rows"][name][1] for r in runs)
        print(f"    {name:42} {w:6.2f} {u:6.2f} {o:8.2f} {o / own:10.0%}")
    return own / wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--project", type=Path, default=ROOT / "examples" / "project")
    parser.add_argument("--scale", default="1,10",
                        help="comma-separated multipliers of the training job's rows; 1 is the project as it is")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.rest)
    scales = [int(s) for s in args.scale.split(",") if s.strip()]
    from _bytecode import compile_stackci

    print(f"bytecode of {compile_stackci()} compiled, as an install has it", file=sys.stderr)

    shares = {}
    with tempfile.TemporaryDirectory(prefix="stackci-bench-rehearse-") as folder:
        tmp = Path(folder)
        cache = tmp / "cache"
        print(f"warm-up run (creates the project's virtual environment in {cache}) ...", file=sys.stderr)
        first = time.monotonic()
        one_run(args.project, cache, tmp, 0)
        print(f"  {time.monotonic() - first:.1f} s", file=sys.stderr)
        for scale in scales:
            label = args.project.name + ("" if scale == 1 else f" with a training job on {scale}x the rows")
            shares[scale] = measure(scaled_copy(args.project, scale, tmp), label, args.runs, cache, tmp)

    print("\nstackci's share of the wall time: " + ", ".join(
        f"{share:.0%} at scale {scale}" for scale, share in shares.items()) + f" (target <= {TARGET_SHARE:.0%} at "
        "scale 1)")
    if 1 in shares and shares[1] > TARGET_SHARE:
        print(f"MISSED: stackci's share on {args.project.name} is {shares[1]:.0%}, above the {TARGET_SHARE:.0%} target")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
