"""Deploy: first deploy, no-op redeploy and one-file change of a generated bundle, against the local
workspace; and the same file upload through the legacy ``databricks workspace import_dir``.

    python benchmarks/deploy.py [--files 300] [--small-files 30] [--jobs 20] [--rounds 3]
                                [--latency-ms 20] [--latency-rounds 2]

1. A bundle of ``--files`` files (a third of them source notebooks, the rest plain Python) in
   folders of 30, and ``--jobs`` jobs (a notebook task and a Python-file task each, the last job
   running the first through ``${resources.jobs.job_00.id}``). Each round: ``stackci deploy``
   of it for the first time, five times more with nothing changed (no-op), once more after one
   file changed; then destroy (not timed). The same for a bundle of ``--small-files`` files and
   the same jobs, to show that a no-op sends the same number of requests whatever the number of
   files; and the big bundle again with ``--latency-ms`` added to every answer of the workspace,
   the way a deploy meets a real workspace across a network (where a first deploy takes seconds,
   not half a second). The deploys run in this process (``stackci.__main__.main``), so the times
   are the deploy's, not the interpreter's start-up (benchmarks/startup.py measures that).
2. Uploading the same ``--files`` files into fresh folders of the same workspace, as a CI step
   runs it: ``python -m stackci deploy`` of a bundle without resources against
   ``databricks workspace import_dir`` (databricks-cli 0.18, the legacy Python CLI: one request
   after the other), rounds interleaved so that noise hits both alike; then the start-up of each
   (interpreter and imports) and the upload work alone, to show where the time goes.

Requests are counted by the server (its fault injector's ``matched`` counter, with a plan that
never fires, or that only delays); the server runs in its own process, so the client does not
compete with it for the GIL. The legacy CLI drops the port of its host, so the server listens on
port 80 when this user may bind it (the CLI then talks to it directly), else the CLI reaches it
as its HTTP proxy. Targets: no-op requests independent of the file count; no-op <= 10% of the
first deploy's time; a one-file change uploads exactly one file (the deploy's own count, and the
one workspace object whose modification time moved).

Prints progress on stderr, results on stdout; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stackci.workspace import LocalWorkspace  # noqa: E402

USER = "bench@stackci.local"
#: databricks-cli's console script, through this interpreter (no other ``databricks`` on PATH is picked up)
LEGACY_CLI = [sys.executable, "-c", "import sys; sys.argv[0] = 'databricks'; from databricks_cli.cli import main; main()"]
LEGACY_NODELAY = [sys.executable, "-c", "import socket, sys; connect = socket.socket.connect\n"
                  "def nodelay(self, address):\n"
                  "    if self.type == socket.SOCK_STREAM and self.family in (socket.AF_INET, socket.AF_INET6):\n"
                  "        self.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n"
                  "    return connect(self, address)\n"
                  "socket.socket.connect = nodelay\n"
                  "sys.argv[0] = 'databricks'; from databricks_cli.cli import main; main()"]
NOTEBOOK = "# Databricks notebook source\n"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the workspace, in its own process
class Server:
    """A LocalWorkspace in a child process, on port 80 when this user may bind it (see upload_rounds)."""

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(str(data_dir), child, port), daemon=True)

    def __enter__(self) -> "Server":
        self._proc.start()
        answer = self._parent.recv()
        if isinstance(answer, str):
            self._proc.join(30)
            raise OSError(answer)
        self.url, self.token = answer
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["Authorization"] = f"Bearer {self.token}"
        return self

    def __exit__(self, *exc) -> None:
        self._parent.send("stop")
        self._proc.join(30)

    #: added to every answer (ms), to see the deploy as it meets a workspace across a network
    latency_ms = 0

    # requests counted at the server: a fault plan that matches every /api/ call and never fires (or, with
    # a latency, a plan that delays every one of them by that much)
    def count_from_zero(self) -> None:
        plan = {"rate": 1e-12, "kinds": ["latency"], "latency_ms": 0, "seed": 1} if not self.latency_ms else \
            {"rate": 1.0, "kinds": ["latency"], "latency_ms": self.latency_ms, "seed": 1}
        r = self.session.put(f"{self.url}/stackci-admin/faults", timeout=30, json=plan)
        r.raise_for_status()

    def count(self) -> int:
        r = self.session.get(f"{self.url}/stackci-admin/faults", timeout=30)
        r.raise_for_status()
        return int(r.json()["matched"])


def _serve(data_dir: str, conn, port: int) -> None:
    try:
        ws = LocalWorkspace(data_dir, user_name=USER, port=port).__enter__()
    except OSError as exc:
        conn.send(f"cannot listen on port {port}: {exc}")
        return
    try:
        conn.send((ws.url, ws.token))
        conn.recv()
    finally:
        ws.__exit__(None, None, None)


# --------------------------------------------------------------------------- the bundle
def make_bundle(root: Path, name: str, files: int, jobs: int) -> list[Path]:
    """Write the bundle; returns the generated source files."""
    (root / "resources").mkdir(parents=True, exist_ok=True)
    include = "include:\n  - resources/*.yml\n" if jobs else ""
    (root / "databricks.yml").write_text(
        f"bundle:\n  name: {name}\n{include}"
        "targets:\n  bench:\n    default: true\n    workspace:\n      host: https://adb-1.azuredatabricks.net\n")
    made = []
    per_folder = 30
    for i in range(files):
        folder = root / "src" / f"d{i // per_folder}"
        folder.mkdir(parents=True, exist_ok=True)
        k = i % per_folder
        path = folder / f"f{k:03d}.py"
        body = "".join(f"VALUE_{n} = {n} * {i}  # generated line\n" for n in range(40))
        path.write_text((NOTEBOOK if k % 3 == 2 else "") + f"# file {i}\n" + body)
        made.append(path)
    if jobs:
        lines = ["resources:", "  jobs:"]
        for j in range(jobs):
            nb, py = 2 + 3 * (j % 3), [0, 1, 3, 4, 6, 7][j % 6]
            lines += [f"    job_{j:02d}:", f"      name: {name}-job-{j:02d}", "      max_concurrent_runs: 1",
                      "      tasks:", "        - task_key: notebook",
                      f"          notebook_task: {{notebook_path: ../src/d0/f{nb:03d}.py}}",
                      "        - task_key: script", "          depends_on: [{task_key: notebook}]",
                      f"          spark_python_task: {{python_file: ../src/d0/f{py:03d}.py}}"]
            if j == jobs - 1 and jobs > 1:
                lines += ["        - task_key: first", "          run_job_task: {job_id: '${resources.jobs.job_00.id}'}"]
        (root / "resources" / "jobs.yml").write_text("\n".join(lines) + "\n")
    return made


# --------------------------------------------------------------------------- running stackci
def stackci(argv: list[str], environ: dict) -> tuple[int, dict, float]:
    """``stackci argv`` in this process: (exit code, outputs, seconds). Its log goes to a buffer."""
    from stackci.__main__ import main
    from stackci.ci import LocalPlatform
    from stackci.context import App

    saved = dict(os.environ)
    os.environ.update(environ)
    app = App(platform=LocalPlatform(dict(os.environ)), environ=dict(os.environ))
    log = io.StringIO()
    start = time.perf_counter()
    try:
        with redirect_stderr(log):
            code = main(argv, app=app)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    took = time.perf_counter() - start
    if code != 0:
        sys.stderr.write(log.getvalue())
        raise SystemExit(f"stackci {' '.join(argv)} failed with exit {code}")
    return code, dict(app.platform.outputs), took


def modified(server: Server, folder: str) -> dict[str, int]:
    """Every object under ``folder``: path → modified_at (through the workspace API)."""
    out: dict[str, int] = {}
    todo = [folder]
    while todo:
        path = todo.pop()
        r = server.session.get(f"{server.url}/api/2.0/workspace/list", params={"path": path}, timeout=30)
        r.raise_for_status()
        for obj in r.json().get("objects") or []:
            if obj["object_type"] == "DIRECTORY":
                todo.append(obj["path"])
            else:
                out[obj["path"]] = obj.get("modified_at")
    return out


NOOPS = 5


def deploy_rounds(server: Server, work: Path, files: int, jobs: int, rounds: int, tag: str = "") -> dict:
    results: dict[str, list] = {"first": [], "noop": [], "one": []}
    env = {"DATABRICKS_HOST": server.url, "DATABRICKS_TOKEN": server.token, "DATABRICKS_AUTH_TYPE": "pat"}
    for r in range(rounds):
        name = f"bench{files}{tag}_r{r}"
        root = work / name
        made = make_bundle(root, name, files, jobs)
        args = ["deploy", "-t", "bench", "--project", str(root), "--host", server.url]
        files_root = f"/Workspace/Users/{USER}/.bundle/{name}/bench/files"

        server.count_from_zero()
        _, out, took = stackci(args, env)
        results["first"].append((server.count(), took, int(out["files-uploaded"]), int(out["created"])))

        for _ in range(NOOPS):       # cheap, so repeated: one median over every round's no-ops
            server.count_from_zero()
            _, out, took = stackci(args, env)
            results["noop"].append((server.count(), took, int(out["files-uploaded"]), int(out["changed"])))

        before = modified(server, files_root)
        time.sleep(0.01)                               # modification times are in milliseconds
        changed = made[len(made) // 2]
        changed.write_text(changed.read_text() + "CHANGED = True\n")
        server.count_from_zero()
        _, out, took = stackci(args, env)
        sent = server.count()
        after = modified(server, files_root)
        moved = sorted(p for p in after if after[p] != before.get(p))
        results["one"].append((sent, took, int(out["files-uploaded"]), len(moved)))

        stackci(["destroy", "-t", "bench", "--project", str(root), "--host", server.url], env)
        progress(f"  {files} files{' with ' + str(server.latency_ms) + ' ms a request' if server.latency_ms else ''}, "
                 f"round {r + 1}/{rounds}: first {results['first'][-1][1]:.2f} s, "
                 f"no-op {results['noop'][-1][1]:.2f} s, one file {results['one'][-1][1]:.2f} s")
    return results


# --------------------------------------------------------------------------- stackci vs import_dir
def upload_rounds(server: Server, work: Path, files: int, rounds: int, tag: str = "") -> dict:
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
            "DATABRICKS_HOST": server.url, "DATABRICKS_TOKEN": server.token}
    # databricks-cli 0.18 drops the port of DATABRICKS_HOST (its base URL is scheme://hostname/api/): on
    # port 80 it talks to the workspace directly; otherwise it reaches it as its HTTP proxy (which the
    # local workspace serves, as in tests/workspace/test_independent_clients.py), where urllib3 leaves
    # Nagle on and every request waits ~40 ms for a delayed ACK, an artefact no real workspace shows:
    # LEGACY_NODELAY turns it off for the proxy connection too, nothing else of the CLI is touched
    if server.url.endswith(":80"):
        legacy_cmd, legacy_env = LEGACY_CLI, {**base, "DATABRICKS_HOST": "http://127.0.0.1", "NO_PROXY": "*"}
    else:
        legacy_cmd = LEGACY_NODELAY
        legacy_env = {**base, "DATABRICKS_HOST": "http://127.0.0.1", "HTTP_PROXY": server.url,
                      "http_proxy": server.url, "NO_PROXY": "", "no_proxy": ""}
    try:
        import databricks_cli  # noqa: F401
    except ImportError:
        raise SystemExit("databricks-cli 0.18 (the legacy Python CLI) is not installed in this environment") from None
    out: dict[str, list] = {"stackci": [], "import_dir": [], "stackci_in_process": [], "start_stackci": [],
                            "start_import_dir": []}
    env = {"DATABRICKS_HOST": server.url, "DATABRICKS_TOKEN": server.token, "DATABRICKS_AUTH_TYPE": "pat"}
    for r in range(rounds):
        name = f"upload{files}{tag}_r{r}"
        root = work / name
        make_bundle(root, name, files, 0)
        # stackci: a first deploy of a bundle without resources, as a CI step runs it
        server.count_from_zero()
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "stackci", "deploy", "-t", "bench", "--project", str(root),
                               "--host", server.url], env={**base, "DATABRICKS_AUTH_TYPE": "pat"},
                              capture_output=True, text=True)
        took = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"stackci deploy failed: {done.stderr}")
        out["stackci"].append((server.count(), took))
        # the legacy CLI: the same source folder into a fresh workspace folder
        server.count_from_zero()
        start = time.perf_counter()
        done = subprocess.run([*legacy_cmd, "workspace", "import_dir", "-o", str(root / "src"),
                               f"/Shared/legacy/{name}"], env=legacy_env, capture_output=True, text=True)
        took = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"databricks workspace import_dir failed: {done.stdout} {done.stderr}")
        out["import_dir"].append((server.count(), took))
        # what each costs before it sends anything: the interpreter and its imports
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import stackci.deploy.cli, stackci.deploy.engine, stackci.bundle.api, "
                        "databricks.sdk"], env=base, check=True)
        out["start_stackci"].append((0, time.perf_counter() - start))
        start = time.perf_counter()
        subprocess.run([*legacy_cmd, "--version"], env=legacy_env, check=True, capture_output=True)
        out["start_import_dir"].append((0, time.perf_counter() - start))
        # and the deploy alone (this process has imported everything already)
        make_bundle(work / f"{name}_in_process", f"{name}_in_process", files, 0)
        server.count_from_zero()
        _, _, took = stackci(["deploy", "-t", "bench", "--project", str(work / f"{name}_in_process"),
                              "--host", server.url], env)
        out["stackci_in_process"].append((server.count(), took))
        progress(f"  upload of {files} files, round {r + 1}/{rounds}: stackci {out['stackci'][-1][1]:.2f} s, "
                 f"import_dir {out['import_dir'][-1][1]:.2f} s")
    return out


# --------------------------------------------------------------------------- report
def med(rows: list, i: int) -> float:
    return statistics.median(row[i] for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--small-files", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=int, default=20,
                        help="also deploy the big bundle with this delay added to every answer (0: skip)")
    parser.add_argument("--latency-rounds", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="stackci-bench-deploy-") as tmp:
        try:
            server = Server(Path(tmp) / "data", port=80).__enter__()
        except OSError:
            server = Server(Path(tmp) / "data2").__enter__()
        work = Path(tmp) / "bundles"
        progress(f"local workspace at {server.url} (own process); {args.rounds} rounds")
        try:
            big = deploy_rounds(server, work, args.files, args.jobs, args.rounds)
            small = deploy_rounds(server, work, args.small_files, args.jobs, args.rounds)
            upload = upload_rounds(server, work, args.files, args.rounds)
            slow = slow_upload = None
            if args.latency_ms:
                server.latency_ms = args.latency_ms
                slow = deploy_rounds(server, work, args.files, args.jobs, args.latency_rounds, tag="lat")
                slow_upload = upload_rounds(server, work, args.files, 1, tag="lat")
                server.latency_ms = 0
        finally:
            server.__exit__(None, None, None)
        legacy_mode = "directly on port 80" if server.url.endswith(":80") else \
            "through the workspace as its HTTP proxy, TCP_NODELAY set (it drops ports)"

    print(f"\nstackci deploy of a generated bundle ({args.jobs} jobs), median of {args.rounds} rounds "
          f"({NOOPS} no-ops each; {args.latency_rounds} rounds with +{args.latency_ms} ms a request), requests counted "
          "at the server")
    print(f"{'':14}{'step':14}{'requests':>9}{'wall':>10}{'vs first':>10}  detail")
    rows = [(f"{args.files} files", big), (f"{args.small_files} files", small)]
    if slow:
        rows.append((f"{args.files}, +{args.latency_ms}ms", slow))
    for label, res in rows:
        first = med(res["first"], 1)
        print(f"{label:14}{'first deploy':14}{med(res['first'], 0):>9.0f}{first:>9.2f}s{'':>10}  "
              f"{med(res['first'], 2):.0f} files uploaded, {med(res['first'], 3):.0f} resources created")
        print(f"{'':14}{'no-op':14}{med(res['noop'], 0):>9.0f}{med(res['noop'], 1):>9.2f}s"
              f"{med(res['noop'], 1) / first:>9.1%}  {med(res['noop'], 2):.0f} files uploaded, "
              f"{med(res['noop'], 3):.0f} resources changed")
        print(f"{'':14}{'one file':14}{med(res['one'], 0):>9.0f}{med(res['one'], 1):>9.2f}s"
              f"{med(res['one'], 1) / first:>9.1%}  {med(res['one'], 2):.0f} file uploaded (deploy's count), "
              f"{med(res['one'], 3):.0f} workspace object modified")
    s, legacy = upload["stackci"], upload["import_dir"]
    s_start, l_start = med(upload["start_stackci"], 1), med(upload["start_import_dir"], 1)
    inproc = upload["stackci_in_process"]
    print(f"\nuploading the same {args.files} files into a fresh folder (import_dir reached the workspace "
          f"{legacy_mode})")
    print(f"{'':44}{'requests':>9}{'wall':>10}")
    print(f"{'as a CI step: stackci deploy (8 in flight)':44}{med(s, 0):>9.0f}{med(s, 1):>9.2f}s")
    print(f"{'as a CI step: databricks workspace import_dir':44}{med(legacy, 0):>9.0f}{med(legacy, 1):>9.2f}s")
    print(f"{'  ratio stackci / import_dir':44}{med(s, 0) / med(legacy, 0):>9.2f}{med(s, 1) / med(legacy, 1):>9.2f}x")
    print(f"{'start-up: python + stackci + databricks-sdk':44}{'':>9}{s_start:>9.2f}s")
    print(f"{'start-up: databricks-cli --version':44}{'':>9}{l_start:>9.2f}s")
    print(f"{'work only: stackci deploy, in process':44}{med(inproc, 0):>9.0f}{med(inproc, 1):>9.2f}s")
    print(f"{'work only: import_dir minus its start-up':44}{'':>9}{med(legacy, 1) - l_start:>9.2f}s")
    print(f"{'  ratio stackci / import_dir':44}{'':>9}{med(inproc, 1) / max(1e-9, med(legacy, 1) - l_start):>9.2f}x")
    if slow:
        s, legacy = slow_upload["stackci"], slow_upload["import_dir"]
        print(f"with +{args.latency_ms} ms a request (1 round)")
        print(f"{'as a CI step: stackci deploy (8 in flight)':44}{med(s, 0):>9.0f}{med(s, 1):>9.2f}s")
        print(f"{'as a CI step: databricks workspace import_dir':44}{med(legacy, 0):>9.0f}{med(legacy, 1):>9.2f}s")
        print(f"{'  ratio stackci / import_dir':44}{med(s, 0) / med(legacy, 0):>9.2f}"
              f"{med(s, 1) / med(legacy, 1):>9.2f}x")

    every = [res for _, res in rows]
    checks = [
        ("no-op requests do not depend on the file count",
         all(row[0] == big["noop"][0][0] for res in every for row in res["noop"]),
         f"{sorted({row[0] for row in big['noop']})} for {args.files} files, "
         f"{sorted({row[0] for row in small['noop']})} for {args.small_files}"),
        (f"no-op <= 10% of the first deploy ({args.files} files, loopback)",
         med(big["noop"], 1) <= 0.10 * med(big["first"], 1), f"{med(big['noop'], 1) / med(big['first'], 1):.1%}"),
    ]
    if slow:
        checks.append((f"no-op <= 10% of the first deploy ({args.files} files, +{args.latency_ms} ms a request)",
                       med(slow["noop"], 1) <= 0.10 * med(slow["first"], 1),
                       f"{med(slow['noop'], 1) / med(slow['first'], 1):.1%}"))
    checks.append(("a one-file change uploads exactly one file",
                   all(row[2] == 1 and row[3] == 1 for res in every for row in res["one"]),
                   f"uploaded {sorted({row[2] for res in every for row in res['one']})}, "
                   f"modified {sorted({row[3] for res in every for row in res['one']})}"))
    print("\ntargets")
    for what, ok, detail in checks:
        print(f"  {'PASS' if ok else 'MISS'}  {what} ({detail})")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
