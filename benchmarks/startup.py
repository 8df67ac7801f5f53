"""Start-up cost of the stackci command and of the toolkit install, side by side.

    python benchmarks/startup.py [--rounds N]

1. ``stackci --help`` against ``python -c pass`` with the same interpreter, interleaved
   round by round so machine noise hits both alike. Target: at most 3x (the CLI
   imports click and nothing heavy; databricks-sdk, requests and yaml load lazily).
2. ``scripts/install-toolkit.sh``: a first install into an empty tool cache, then a
   warm re-run that must reuse the cached environment. Target: warm run under 2 s
   and at least 10x faster than the first.

Prints the medians and the ratios; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _time(cmd, env=None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def cli_startup(rounds: int) -> bool:
    baseline, stackci = [], []
    for i in range(rounds):
        baseline.append(_time([sys.executable, "-c", "pass"]))
        stackci.append(_time([sys.executable, "-m", "stackci", "--help"]))
        print(f"\r  round {i + 1}/{rounds}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    b, s = statistics.median(baseline), statistics.median(stackci)
    ratio = s / b
    print(f"python -c pass   median {b * 1000:7.1f} ms")
    print(f"stackci --help   median {s * 1000:7.1f} ms")
    print(f"ratio            {ratio:7.2f}x  (target <= 3x)")
    return ratio <= 3.0


def toolkit_install() -> bool:
    with tempfile.TemporaryDirectory(prefix="stackci-bench-") as tmp:
        env = dict(os.environ, STACKCI_TOOLKIT_DIR=str(Path(tmp) / "toolkit"),
                   STACKCI_INSTALL_PYTHON=sys.executable, GITHUB_PATH=str(Path(tmp) / "path"),
                   GITHUB_OUTPUT=str(Path(tmp) / "out"))
        env.pop("GITHUB_ACTIONS", None)
        script = ["bash", str(ROOT / "scripts" / "install-toolkit.sh")]
        print("  first install (creates a venv and installs this checkout)...", file=sys.stderr, flush=True)
        cold = _time(script, env)
        warm = statistics.median(_time(script, env) for _ in range(5))
    ratio = cold / warm
    print(f"toolkit first install   {cold:7.2f} s")
    print(f"toolkit warm reuse      {warm:7.2f} s  (target < 2 s)")
    print(f"ratio                   {ratio:7.1f}x  (target >= 10x)")
    return warm < 2.0 and ratio >= 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--skip-install", action="store_true", help="only measure the CLI start-up")
    args = parser.parse_args()
    from _bytecode import compile_stackci

    print(f"bytecode of {compile_stackci()} compiled, as an install has it", file=sys.stderr)
    ok = cli_startup(args.rounds)
    if not args.skip_install:
        ok = toolkit_install() and ok
    print("all targets met" if ok else "a target was missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
