"""How fast and how cheaply stackci notices that a run ended, against the SDK's waiter.

    python benchmarks/wait.py [--durations 1,10,60]

For runs of 1 s, 10 s and 60 s on a local workspace, stackci and the SDK each start and
watch their own run of the same job at the same time (threads): stackci as `stackci
run-job` does it (run-now with a token, the adaptive waiter, the task outputs, the JUnit
file and summary), the SDK as ``w.jobs.run_now(...).result()``. For each the script prints
the delay between the run's end (its end_time) and the call returning, and the number of
``runs/get`` calls per minute of waiting, side by side with the SDK/stackci ratios.
Targets for stackci: delay <= 1 s for the 1 s run, <= 10 calls per minute for the 60 s
run. No schedule meets both and a 1 s delay for the 10 s run as well (that needs a call a
second for ten seconds, more than ten calls in the first minute); its figures are printed
for comparison.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", default="1,10,60")
    args = parser.parse_args()
    durations = [float(d) for d in args.durations.split(",")]

    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config
    from databricks.sdk.service import jobs
    from databricks.sdk.service.workspace import ImportFormat

    from stackci.workspace import LocalWorkspace

    results: dict[tuple[str, float], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, LocalWorkspace(Path(tmp) / "data") as ws:
        def client():
            return WorkspaceClient(config=Config(host=ws.url, token=ws.token, auth_type="pat"))

        w = client()
        w.workspace.mkdirs("/Workspace/Shared/bench")
        w.workspace.upload("/Workspace/Shared/bench/sleep.py",
                           io.BytesIO(b"import sys, time\ntime.sleep(float(sys.argv[1]))\n"),
                           format=ImportFormat.AUTO, overwrite=True)

        def job_for(seconds: float) -> int:
            task = jobs.Task(task_key="sleep", spark_python_task=jobs.SparkPythonTask(
                python_file="/Workspace/Shared/bench/sleep.py", parameters=[str(seconds)]))
            return w.jobs.create(name=f"sleep {seconds}", tasks=[task], max_concurrent_runs=4).job_id

        def measure(kind: str, seconds: float, job_id: int) -> None:
            c = client()
            calls = 0
            original = c.jobs.get_run

            def counting(*a, **kw):
                nonlocal calls
                calls += 1
                return original(*a, **kw)

            c.jobs.get_run = counting
            started = time.time()
            if kind == "stackci":
                from stackci.ci import LocalPlatform
                from stackci.context import App
                from stackci.runs.cli import run_job

                app = App(platform=LocalPlatform({}), environ={})
                job = c.jobs.get(job_id)
                run_job(app, c, job, params={}, timeout=None, junit_xml=Path(tmp) / f"{kind}-{seconds}.xml",
                        token=f"bench-{seconds}")
                run_id = int(app.platform.outputs["run-id"])
            else:
                run_id = c.jobs.run_now(job_id).result(timeout=timedelta(minutes=10)).run_id
            returned = time.time()
            run = original(run_id)
            delay = returned - run.end_time / 1000.0
            minutes = max(returned - started, 1e-9) / 60.0
            results[(kind, seconds)] = (delay, calls / minutes)
            print(f"  {kind:8s} {seconds:5.0f} s run: returned {delay:5.2f} s after it ended, "
                  f"{calls} runs/get calls", file=sys.stderr, flush=True)

        threads = []
        for seconds in durations:
            job_id = job_for(seconds)
            for kind in ("stackci", "sdk"):
                threads.append(threading.Thread(target=measure, args=(kind, seconds, job_id)))
        print(f"waiting for {len(threads)} runs (longest {max(durations):.0f} s)...", file=sys.stderr, flush=True)
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    print(f"{'run':>6} | {'stackci delay':>13} | {'sdk delay':>9} | {'sdk/stackci':>11} | "
          f"{'stackci calls/min':>17} | {'sdk calls/min':>13} | {'sdk/stackci':>11}")
    ok = True
    for seconds in durations:
        sd, sc = results[("stackci", seconds)]
        kd, kc = results[("sdk", seconds)]
        print(f"{seconds:5.0f}s | {sd:12.2f}s | {kd:8.2f}s | {kd / max(sd, 1e-3):10.1f}x | "
              f"{sc:17.1f} | {kc:13.1f} | {kc / max(sc, 1e-3):10.1f}x")
        if seconds <= 1 and sd > 1.0:
            ok = False
        if seconds >= 60 and sc > 10:
            ok = False
    print("all targets met" if ok else "a target was missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
