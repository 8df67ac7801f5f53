"""Read-only HTML pages of the local workspace, so that the links stackci prints open in a browser.

* ``/``: the workspace's jobs and its most recent runs;
* ``/?o=<workspace id>#job/<job>/run/<run>`` (the ``run_page_url`` shape of Databricks, which the
  Jobs API hands out): the same page, whose small inline script turns the fragment, which never
  reaches a server, into the run page;
* ``/jobs/<job id>``: one job, its tasks and its runs;
* ``/jobs/<job id>/runs/<run id>``: one run (or one task run) with its tasks.

They show names, ids, task keys, states and timings only: never logs, outputs, state messages,
parameters, tags or task settings, where a secret could be. Every value is HTML-escaped; a strict
Content-Security-Policy allows nothing but the page's own style and that one script.

No token is needed while the server listens on loopback, and then only for requests whose
``Host`` is a loopback name (a web page cannot reach them through DNS rebinding). A server bound
elsewhere (``--allow-remote-bind``) wants the API's bearer token for them too.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import time
from typing import Iterable

from stackci.workspace.api import ApiError, RawResponse, Request

TERMINAL = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")
JOBS_SHOWN = 100
RUNS_SHOWN = 25

STYLE = ("body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#1b1f24}"
         "table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{text-align:left;padding:.25em .8em;"
         "border-bottom:1px solid #d8dee4;vertical-align:top}th{background:#f6f8fa}code{font-size:13px}"
         ".SUCCESS{color:#1a7f37}.FAILED,.INTERNAL_ERROR,.TIMEDOUT{color:#cf222e}.CANCELED,.SKIPPED{color:#6e7781}"
         "tr.here td{background:#fff8c5}.note{color:#57606a}")
#: the fragment of a Databricks run link (#job/<job>/run/<run>, or #job/<job>) to the page of that run
SCRIPT = ("var m=/^#job\\/(\\d+)(?:\\/run\\/(\\d+))?$/.exec(location.hash);"
          "if(m)location.replace('/jobs/'+m[1]+(m[2]?'/runs/'+m[2]:''));")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


HEADERS = {
    "Content-Security-Policy": f"default-src 'none'; style-src {_sha256(STYLE)}; script-src {_sha256(SCRIPT)}; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def when(ms) -> str:
    if not isinstance(ms, int) or ms <= 0:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


def took(ms) -> str:
    if not isinstance(ms, (int, float)) or ms <= 0:
        return ""
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def _duration(doc: dict, now_ms: int) -> str:
    start, end = doc.get("start_time") or 0, doc.get("end_time") or 0
    if doc.get("run_duration"):
        return took(doc["run_duration"])
    if start and end >= start:
        return took(end - start)
    if start and (doc.get("state") or {}).get("life_cycle_state") not in TERMINAL:
        return took(now_ms - start) + " so far"
    return took(doc.get("execution_duration"))


def _state(doc: dict) -> tuple[str, str]:
    state = doc.get("state") or {}
    return str(state.get("life_cycle_state") or ""), str(state.get("result_state") or "")


def _state_cell(doc: dict) -> str:
    life, result = _state(doc)
    shown = life + (f" · {result}" if result else "")
    return f'<span class="{esc(result or life)}">{esc(shown)}</span>'


def _table(heads: Iterable[str], rows: list[list[str]], marked: set[int] = frozenset()) -> str:
    """``rows`` hold HTML already escaped; ``marked``: indexes of rows to highlight."""
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in heads) + "</tr>"]
    for i, row in enumerate(rows):
        out.append(("<tr class=\"here\">" if i in marked else "<tr>") + "".join(f"<td>{c}</td>" for c in row)
                   + "</tr>")
    return "".join(out) + "</table>"


def _is_loopback_name(host: str) -> bool:
    """A Host header naming this machine: what the server binds to, ``[::1]``, or ``*.localhost``."""
    from stackci.workspace.server import is_loopback

    host = host.strip("[]")
    return host.endswith(".localhost") or is_loopback(host)


def _host_name(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Pages:
    """The page handlers of one :class:`~stackci.workspace.server.LocalWorkspace`."""

    def __init__(self, workspace) -> None:
        self.ws = workspace

    # ---- access and rendering ------------------------------------------------

    def _denied(self, req: Request) -> RawResponse | None:
        from stackci.workspace.server import is_loopback

        if is_loopback(self.ws.host):
            if _is_loopback_name(_host_name(req.headers.get("host", ""))):
                return None
            return self._page(403, "Not here", "<p>These pages answer requests for a loopback address (127.0.0.1, "
                                               "localhost) only.</p>")
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip() and self.ws.auth.principal_for(token.strip()):
            return None
        return self._page(401, "Token needed", "<p>This local workspace listens on a non-loopback address: its "
                                               "pages need the workspace token (<code>Authorization: Bearer "
                                               "…</code>), like its API.</p>")

    def _page(self, status: int, title: str, body: str, *, script: bool = False, refresh: bool = False) -> RawResponse:
        head = [f"<meta charset=\"utf-8\"><title>{esc(title)} · stackci local workspace</title>",
                f"<style>{STYLE}</style>"]
        if refresh:
            head.append('<meta http-equiv="refresh" content="5">')
        if script:
            head.append(f"<script>{SCRIPT}</script>")
        nav = (f'<p class="note"><a href="/">stackci local workspace</a> {esc(self.ws.workspace_id)} · '
               f"{esc(self.ws.url)} · read-only</p>")
        doc = (f"<!DOCTYPE html><html lang=\"en\"><head>{''.join(head)}</head><body>{nav}"
               f"<h1>{esc(title)}</h1>{body}</body></html>")
        return RawResponse(doc.encode("utf-8"), "text/html; charset=utf-8", dict(HEADERS), status)

    def _missing(self, what: str) -> RawResponse:
        return self._page(404, "Not found", f"<p>{esc(what)} does not exist in this local workspace.</p>"
                                            "<p><a href=\"/\">All jobs and recent runs</a></p>")

    # ---- data ----------------------------------------------------------------------

    def _docs(self, sql: str, args: tuple = ()) -> list[dict]:
        return [json.loads(row[0]) for row in self.ws.store.query(sql, args)]

    def _job(self, job_id: int) -> dict | None:
        docs = self._docs("SELECT doc FROM jobs WHERE job_id = ?", (job_id,))
        return docs[0] if docs else None

    def _job_names(self, ids: set[int]) -> dict[int, str]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.ws.store.query(f"SELECT job_id, name FROM jobs WHERE job_id IN ({marks})", tuple(ids))
        return {job_id: name for job_id, name in rows}

    def _run_rows(self, runs: list[dict], with_job: bool) -> list[list[str]]:
        now = int(time.time() * 1000)
        names = self._job_names({r["job_id"] for r in runs}) if with_job else {}
        rows = []
        for run in runs:
            link = f'<a href="/jobs/{int(run["job_id"])}/runs/{int(run["run_id"])}">{int(run["run_id"])}</a>'
            row = [link]
            if with_job:
                job_id = int(run["job_id"])
                row.append(f'<a href="/jobs/{job_id}">{esc(names[job_id])}</a>' if job_id in names
                           else esc(run.get("run_name")) + ' <span class="note">(one-time run)</span>')
            row += [_state_cell(run), esc(run.get("trigger")), esc(when(run.get("start_time"))),
                    esc(_duration(run, now))]
            rows.append(row)
        return rows

    # ---- pages -----------------------------------------------------------------------

    def index(self, req: Request) -> RawResponse:
        denied = self._denied(req)
        if denied is not None:
            return denied
        wanted = req.query.get("o")
        body = []
        if wanted is not None and wanted != self.ws.workspace_id:
            body.append(f"<p><strong>This link is for workspace {esc(wanted)}; this local workspace is "
                        f"{esc(self.ws.workspace_id)}.</strong> Its runs are not here.</p>")
        jobs = self._docs("SELECT doc FROM jobs ORDER BY job_id DESC LIMIT ?", (JOBS_SHOWN,))
        body.append(f"<h2>Jobs ({len(jobs)}{'+' if len(jobs) == JOBS_SHOWN else ''})</h2>")
        body.append(_table(["Job", "Name", "Created", "Tasks"], [
            [f'<a href="/jobs/{int(j["job_id"])}">{int(j["job_id"])}</a>', esc(j["settings"].get("name")),
             esc(when(j.get("created_time"))), esc(len(j["settings"].get("tasks") or []))] for j in jobs])
                    if jobs else '<p class="note">No jobs.</p>')
        runs = self._docs("SELECT doc FROM runs ORDER BY run_id DESC LIMIT ?", (RUNS_SHOWN,))
        body.append("<h2>Recent runs</h2>")
        body.append(_table(["Run", "Job", "State", "Trigger", "Started", "Duration"], self._run_rows(runs, True))
                    if runs else '<p class="note">No runs.</p>')
        return self._page(200, "Jobs and recent runs", "".join(body), script=wanted is not None
                          and wanted == self.ws.workspace_id)

    def job(self, req: Request) -> RawResponse:
        denied = self._denied(req)
        if denied is not None:
            return denied
        job_id = int(req.match["job_id"])
        job = self._job(job_id)
        if job is None:
            return self._missing(f"Job {job_id}")
        settings = job.get("settings") or {}
        facts = _table(["Job id", "Created", "Created by", "Max concurrent runs"], [[
            esc(job_id), esc(when(job.get("created_time"))), esc(job.get("creator_user_name")),
            esc(settings.get("max_concurrent_runs", 1))]])
        tasks = [[f"<code>{esc(t.get('task_key'))}</code>", esc(_kind(t)),
                  esc(", ".join(str(d.get("task_key")) for d in t.get("depends_on") or []))]
                 for t in settings.get("tasks") or []]
        runs = self._docs("SELECT doc FROM runs WHERE job_id = ? ORDER BY run_id DESC LIMIT ?", (job_id, RUNS_SHOWN))
        active = any(_state(r)[0] not in TERMINAL for r in runs)
        body = [facts, "<h2>Tasks</h2>",
                _table(["Task", "Kind", "Depends on"], tasks) if tasks else '<p class="note">No tasks.</p>',
                "<h2>Runs</h2>",
                _table(["Run", "State", "Trigger", "Started", "Duration"], self._run_rows(runs, False))
                if runs else '<p class="note">No runs yet.</p>']
        return self._page(200, str(settings.get("name") or f"Job {job_id}"), "".join(body), refresh=active)

    def run(self, req: Request) -> RawResponse:
        denied = self._denied(req)
        if denied is not None:
            return denied
        job_id, run_id = int(req.match["job_id"]), int(req.match["run_id"])
        try:
            parent, task = self.ws.jobs._resolve(run_id)
        except ApiError:
            return self._missing(f"Run {run_id}")
        task_run = run_id if task is not None else None
        if int(parent["job_id"]) != job_id:
            return self._missing(f"Run {run_id} of job {job_id}")
        now = int(time.time() * 1000)
        job = self._job(job_id)
        job_cell = (f'<a href="/jobs/{job_id}">{esc((job.get("settings") or {}).get("name"))}</a>' if job
                    else esc(parent.get("run_name")) + ' <span class="note">(one-time run)</span>')
        status = (parent.get("status") or {}).get("termination_details") or {}
        facts = _table(["Job", "Run", "State", "Termination", "Trigger", "Started", "Ended", "Duration"], [[
            job_cell, esc(parent["run_id"]), _state_cell(parent),
            esc(" / ".join(str(v) for v in (status.get("code"), status.get("type")) if v)),
            esc(parent.get("trigger")), esc(when(parent.get("start_time"))), esc(when(parent.get("end_time"))),
            esc(_duration(parent, now))]])
        tasks = parent.get("tasks") or []
        rows, marked = [], set()
        for i, t in enumerate(tasks):
            if t.get("run_id") == task_run:
                marked.add(i)
            rows.append([f"<code>{esc(t.get('task_key'))}</code>",
                         f'<a href="/jobs/{job_id}/runs/{int(t["run_id"])}">{int(t["run_id"])}</a>',
                         _state_cell(t), esc(t.get("attempt_number", 0)),
                         esc(", ".join(str(d.get("task_key")) for d in t.get("depends_on") or [])),
                         esc(when(t.get("start_time"))), esc(_duration(t, now))])
        note = ""
        if task_run is not None and not marked:
            note = (f'<p class="note">Task run {esc(task_run)} is an earlier attempt of a task of this run; the '
                    "table shows the latest attempts.</p>")
        body = [facts, "<h2>Tasks</h2>", note,
                _table(["Task", "Task run", "State", "Attempt", "Depends on", "Started", "Duration"], rows, marked)
                if rows else '<p class="note">No tasks.</p>',
                '<p class="note">Logs, outputs and parameters are not shown here: read them through the API '
                "(runs/get-output) or the report of the stackci command that ran the job.</p>"]
        title = f"Run {parent['run_id']}" + (f" · task run {task_run}" if task_run is not None else "")
        return self._page(200, title, "".join(body), refresh=_state(parent)[0] not in TERMINAL)


def _kind(task: dict) -> str:
    for key, label in (("notebook_task", "notebook"), ("spark_python_task", "Python file"),
                       ("python_wheel_task", "wheel"), ("condition_task", "condition"), ("run_job_task", "run job"),
                       ("sql_task", "SQL"), ("pipeline_task", "pipeline"), ("spark_jar_task", "JAR"),
                       ("dbt_task", "dbt"), ("for_each_task", "for each")):
        if key in task:
            return label
    return ""
