"""Local workspace: runs/get latency under concurrent pollers, and run throughput against plain processes.

    python benchmarks/workspace.py [--pollers 16] [--polls 150] [--runs 50] [--rounds 3]

1. runs/get latency: ``--pollers`` threads, each with its own keep-alive HTTP
   session, call ``runs/get`` of a 10-task run ``--polls`` times while that run
   executes (real processes). Prints p50 / p99 / max in milliseconds.
2. Throughput: ``--runs`` one-task runs of a trivial Python file, all submitted at
   once through ``runs/submit`` and polled (in submission order, every 10 ms)
   until every one is TERMINATED, against
   the same number of ``python file.py`` processes started at once with
   subprocess and waited for. Both sides run on this machine, interleaved round
   by round so that noise hits both alike. Target: workspace / direct <= 2x.

The server runs in its own process (as ``stackci workspace serve`` would), so
that the benchmark's client threads do not compete with it for the GIL.

Prints progress on stderr, results on stdout; exits 1 when the ratio misses the target.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stackci.workspace import LocalWorkspace  # noqa: E402

TRIVIAL = "import sys\nprint('hello from', sys.argv[0])\n"
API = "/api/2.2/jobs"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Server:
    """A LocalWorkspace in a child process; ``url`` and ``token`` as on LocalWorkspace."""

    def __init__(self, data_dir: Path) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(str(data_dir), child), daemon=True)

    def __enter__(self) -> "Server":
        self._proc.start()
        self.url, self.token = self._parent.recv()
        return self

    def __exit__(self, *exc) -> None:
        self._parent.send("stop")
        self._proc.join(30)


def _serve(data_dir: str, conn) -> None:
    with LocalWorkspace(data_dir) as ws:
        conn.send((ws.url, ws.token))
        conn.recv()


class Client:
    def __init__(self, ws) -> None:
        self.url = ws.url
        self.session = requests.Session()
        self.session.trust_env = False  # loopback: no proxy look-ups in the environment on every request
        self.session.headers["Authorization"] = f"Bearer {ws.token}"

    def call(self, method: str, path: str, **kwargs) -> dict:
        resp = self.session.request(method, self.url + path, timeout=60, **kwargs)
        if resp.status_code != 200:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text}")
        return resp.json()

    def close(self) -> None:
        self.session.close()


def upload(client: Client, path: str, text: str) -> None:
    client.session.post(client.url + "/api/2.0/workspace/mkdirs", json={"path": path.rsplit("/", 1)[0]},
                        timeout=30).raise_for_status()
    client.session.post(client.url + f"/api/2.0/workspace-files/import-file{path}", params={"overwrite": "true"},
                        data=text.encode(), timeout=30).raise_for_status()


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


# ---------------------------------------------------------------------------- 1. runs/get latency

def runs_get_latency(ws: Server, pollers: int, polls: int) -> dict:
    client = Client(ws)
    upload(client, "/Shared/bench/sleep.py", "import time\ntime.sleep(1.5)\n")
    tasks = [{"task_key": f"t{i}", "spark_python_task": {"python_file": "/Workspace/Shared/bench/sleep.py"}}
             for i in range(10)]
    for i in range(5, 10):  # half of them wait for the first half: BLOCKED, then RUNNING
        tasks[i]["depends_on"] = [{"task_key": f"t{i - 5}"}]
    run_id = client.call("POST", f"{API}/runs/submit", json={"run_name": "latency", "tasks": tasks})["run_id"]
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []
    barrier = threading.Barrier(pollers)

    def poll() -> None:
        mine = []
        c = Client(ws)
        try:
            barrier.wait()
            for _ in range(polls):
                start = time.perf_counter()
                doc = c.call("GET", f"{API}/runs/get", params={"run_id": run_id})
                mine.append(time.perf_counter() - start)
                if len(doc.get("tasks", [])) != 10:
                    errors.append("incomplete document")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
        finally:
            c.close()
            with lock:
                latencies.extend(mine)

    progress(f"[latency] {pollers} pollers x {polls} runs/get of a 10-task run while it executes...")
    threads = [threading.Thread(target=poll) for _ in range(pollers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    while client.call("GET", f"{API}/runs/get", params={"run_id": run_id})["state"]["life_cycle_state"] not in (
            "TERMINATED", "INTERNAL_ERROR", "SKIPPED"):
        time.sleep(0.05)
    client.close()
    if errors:
        raise RuntimeError(f"runs/get failed: {errors[:3]}")
    return {"count": len(latencies), "p50": percentile(latencies, 50) * 1000, "p99": percentile(latencies, 99) * 1000,
            "max": max(latencies) * 1000, "rps": len(latencies) / elapsed}


# ---------------------------------------------------------------------------- 2. throughput

def direct_round(python: str, script: Path, runs: int) -> float:
    start = time.perf_counter()
    procs = [subprocess.Popen([python, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(runs)]
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("the trivial script failed")
    return time.perf_counter() - start


def workspace_round(ws: Server, runs: int) -> float:
    client = Client(ws)
    task = {"task_key": "hello", "spark_python_task": {"python_file": "/Workspace/Shared/bench/hello.py"}}
    start = time.perf_counter()
    ids = [client.call("POST", f"{API}/runs/submit", json={"run_name": f"hello-{i}", "tasks": [task]})["run_id"]
           for i in range(runs)]
    # wait for the runs in submission order: a poll stops at the first run still active, so the observer
    # costs one request per 10 ms instead of one per run (the end is still seen within ~10 ms)
    pending = list(ids)
    while pending:
        doc = client.call("GET", f"{API}/runs/get", params={"run_id": pending[0]})
        state = doc["state"]
        if state["life_cycle_state"] in ("TERMINATED", "INTERNAL_ERROR", "SKIPPED"):
            if state.get("result_state") != "SUCCESS":
                raise RuntimeError(f"run {pending[0]} ended {state}")
            pending.pop(0)
        else:
            time.sleep(0.01)
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed


def throughput(ws: Server, runs: int, rounds: int, tmp: Path) -> dict:
    client = Client(ws)
    upload(client, "/Shared/bench/hello.py", TRIVIAL)
    client.close()
    script = tmp / "hello.py"
    script.write_text(TRIVIAL)
    progress(f"[throughput] warm-up: {runs} direct processes and {runs} workspace runs...")
    direct_round(sys.executable, script, runs)
    workspace_round(ws, runs)
    direct, local = [], []
    for i in range(rounds):
        d = direct_round(sys.executable, script, runs)
        direct.append(d)
        w = workspace_round(ws, runs)
        local.append(w)
        progress(f"[throughput] round {i + 1}/{rounds}: direct {d:.2f}s, workspace {w:.2f}s ({w / d:.2f}x)")
    d, w = statistics.median(direct), statistics.median(local)
    return {"direct": d, "workspace": w, "ratio": w / d}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pollers", type=int, default=16)
    parser.add_argument("--polls", type=int, default=150)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stackci-bench-ws-") as tmp:
        with Server(Path(tmp) / "data") as ws:
            progress(f"local workspace at {ws.url}")
            lat = runs_get_latency(ws, args.pollers, args.polls)
            thr = throughput(ws, args.runs, args.rounds, Path(tmp))
    print(f"runs/get under {args.pollers} pollers: p50 {lat['p50']:.1f} ms  p99 {lat['p99']:.1f} ms  "
          f"max {lat['max']:.1f} ms  ({lat['count']} requests, {lat['rps']:.0f} req/s)")
    print(f"{args.runs} one-task runs, submit -> TERMINATED: workspace {thr['workspace']:.2f} s (median of "
          f"{args.rounds})")
    print(f"{args.runs} direct python processes:             direct    {thr['direct']:.2f} s")
    print(f"ratio workspace / direct: {thr['ratio']:.2f}x  (target <= 2x)")
    return 0 if thr["ratio"] <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
