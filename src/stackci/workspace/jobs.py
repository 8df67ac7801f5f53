"""Jobs API 2.1/2.2: jobs, runs, their documents and their pagination.

States follow the real service and only use values that databricks-sdk's enums
know (an unknown value deserialises to None and makes its waiter spin):

* a run is created PENDING (or QUEUED / SKIPPED with MAXIMUM_CONCURRENT_RUNS_REACHED
  when ``max_concurrent_runs`` is reached, depending on ``queue.enabled``), then
  RUNNING, then TERMINATED with SUCCESS, SUCCESS_WITH_FAILURES, CANCELED or
  TIMEDOUT;
* when a task fails (or times out) and that failure reaches a leaf of the DAG, the
  parent run ends INTERNAL_ERROR/FAILED with ``state_message`` "Task <key> failed
  with message: ...", as the real multi-task runs do; the task itself is
  TERMINATED/FAILED (or TIMEDOUT);
* tasks that never ran are SKIPPED with UPSTREAM_FAILED, UPSTREAM_CANCELED or
  EXCLUDED (run_if or condition outcome not met);
* ``status`` (the newer state) carries ``termination_details {code, type, message}``;
* ``runs/get-output`` answers for task run ids only: a parent run id is refused with the
  real service's 400 "Retrieving the output of runs with multiple tasks is not
  supported..." even for a one-task run (Jobs 2.1+ does the same);
* a retry is a new task run id (``attempt_number`` counts up); earlier attempts stay
  readable through runs/get and runs/get-output.

Errors for unknown ids are 400 INVALID_PARAMETER_VALUE "Job <id> does not exist." /
"Run <id> does not exist.", as the Jobs service answers.
"""

from __future__ import annotations

import base64
import json
import logging
import threading

from stackci.workspace.api import ApiError, Request, invalid, typed
from stackci.workspace.settings import merge_update, validate_settings
from stackci.workspace.store import Store, now_ms

log = logging.getLogger(__name__)

ACTIVE_STATES = ("QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY")
TERMINAL_STATES = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")
JOB_ID_START = 100_000_000_000_001
RUN_ID_START = 500_000_000_000_001
MAX_JOBS_PAGE = 100
MAX_RUNS_PAGE = 25


def encode_token(doc: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def decode_token(token: str) -> dict:
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(doc, dict):
            raise ValueError
        return doc
    except (ValueError, TypeError):
        raise invalid(f"Invalid page_token: {token}") from None


INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


def fits_int64(value) -> bool:
    """Whether ``value`` can be an id or a time in the store (SQLite integers are 64-bit)."""
    return isinstance(value, int) and INT64_MIN <= value <= INT64_MAX


def termination_type(code: str) -> str:
    if code in ("SUCCESS", "SUCCESS_WITH_FAILURES", "USER_CANCELED", "SKIPPED"):
        return "SUCCESS"
    if code in ("INTERNAL_ERROR", "DRIVER_ERROR", "CLUSTER_ERROR", "MAX_SPARK_CONTEXTS_EXCEEDED"):
        return "INTERNAL_ERROR"
    if code in ("CLOUD_FAILURE",):
        return "CLOUD_FAILURE"
    return "CLIENT_ERROR"


def public(doc: dict) -> dict:
    """A run or task document without the internal ``_x`` fields."""
    out = {k: v for k, v in doc.items() if not k.startswith("_")}
    if "tasks" in out:
        out["tasks"] = [{k: v for k, v in t.items() if not k.startswith("_")} for t in out["tasks"]]
    return out


class JobsService:
    def __init__(self, store: Store, *, host: str, workspace_id: str, user_name: str) -> None:
        self.store = store
        self.host = host
        self.workspace_id = workspace_id
        self.user_name = user_name
        self.orchestrator = None  # set by the server
        self.permissions = None  # set by the server: a deleted job's ACL goes with it
        self._admit_lock = threading.RLock()

    # ---- jobs ---------------------------------------------------------------

    def _job(self, job_id) -> dict:
        if not fits_int64(job_id):
            raise invalid(f"Job {job_id} does not exist.")
        rows = self.store.query("SELECT doc FROM jobs WHERE job_id = ?", (job_id,))
        if not rows:
            raise invalid(f"Job {job_id} does not exist.")
        return json.loads(rows[0][0])

    def _save_job(self, doc: dict) -> None:
        self.store.execute(
            "INSERT OR REPLACE INTO jobs (job_id, name, created_time, doc) VALUES (?, ?, ?, ?)",
            (doc["job_id"], doc["settings"].get("name"), doc["created_time"], Store.dumps(doc)))

    def create(self, req: Request) -> dict:
        body = dict(req.json())
        for name in ("access_control_list", "idempotency_token"):
            body.pop(name, None)
        settings = validate_settings(body)
        job_id = self.store.next_id("job", JOB_ID_START)
        doc = {"job_id": job_id, "creator_user_name": req.principal or self.user_name,
               "run_as_user_name": req.principal or self.user_name, "created_time": now_ms(),
               "settings": settings}
        self._save_job(doc)
        return {"job_id": job_id}

    def reset(self, req: Request) -> dict:
        job_id = req.field("job_id", int, required=True)
        new = req.field("new_settings", dict, required=True)
        with self.store.transaction():
            doc = self._job(job_id)
            doc["settings"] = validate_settings(new)
            self._save_job(doc)
        return {}

    def update(self, req: Request) -> dict:
        job_id = req.field("job_id", int, required=True)
        new = req.field("new_settings", dict) or {}
        remove = req.field("fields_to_remove", list) or []
        with self.store.transaction():
            doc = self._job(job_id)
            merged = merge_update(doc["settings"], new, remove)
            doc["settings"] = validate_settings(merged)
            self._save_job(doc)
        return {}

    def get(self, req: Request) -> dict:
        job_id = req.int_arg("job_id", required=True)
        doc = self._job(job_id)
        doc["has_more"] = False
        return doc

    def delete(self, req: Request) -> dict:
        job_id = req.field("job_id", int, required=True)
        self._job(job_id)
        if self.orchestrator is not None:
            for run_id in self._active_run_ids(job_id):
                self.orchestrator.cancel(run_id)
        with self.store.transaction():
            self.store.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
            if self.permissions is not None:
                self.permissions.forget("jobs", job_id)
        return {}

    def _page(self, table: str, key: str, where: list, args: list, limit: int, offset: int,
              token: str | None) -> tuple[list[dict], bool]:
        """One page, newest first: ``offset`` on the first page, then a keyset cursor in the token."""
        if token:
            cursor = decode_token(token)
            if not fits_int64(cursor.get("before")):
                raise invalid(f"Invalid page_token: {token}")
            where, args = where + [f"{key} < ?"], args + [cursor["before"]]
        sql = f"SELECT doc FROM {table}" + (" WHERE " + " AND ".join(where) if where else "")
        sql += f" ORDER BY {key} DESC LIMIT ? OFFSET ?"
        rows = self.store.query(sql, tuple(args) + (limit + 1, 0 if token else offset))
        docs = [json.loads(r[0]) for r in rows]
        return docs[:limit], len(docs) > limit

    def list(self, req: Request) -> dict:
        limit = req.int_arg("limit", default=20)
        if limit < 0 or limit > MAX_JOBS_PAGE:
            raise invalid(f"The limit must be between 0 and {MAX_JOBS_PAGE}, got {limit}")
        limit = limit or 20
        offset = req.int_arg("offset", default=0)
        if not 0 <= offset <= INT64_MAX:
            raise invalid(f"The offset must not be negative, got {offset}")
        expand = req.bool_arg("expand_tasks")
        name = req.arg("name")
        token = req.arg("page_token")
        where, args = [], []
        if name is not None:
            where.append("name = ? COLLATE NOCASE")
            args.append(name)
        docs, has_more = self._page("jobs", "job_id", where, args, limit, offset, token)
        out: dict = {}
        jobs = []
        for doc in docs:
            if not expand:
                settings = {k: v for k, v in doc["settings"].items()
                            if k not in ("tasks", "job_clusters", "parameters", "environments")}
                doc["settings"] = settings
            else:
                doc["has_more"] = False
            jobs.append(doc)
        if jobs:
            out["jobs"] = jobs
        out["has_more"] = has_more
        if has_more:
            out["next_page_token"] = encode_token({"before": docs[-1]["job_id"]})
        return out

    # ---- creating runs ------------------------------------------------------

    def run_now(self, req: Request) -> dict:
        job_id = req.field("job_id", int, required=True)
        token = self._idempotency(req)
        params = req.field("job_parameters", dict) or {}
        only = req.field("only", list)
        queue = req.field("queue", dict)
        notebook_params = req.field("notebook_params", dict) or {}
        python_params = req.field("python_params", list)
        if only is not None and not all(isinstance(k, str) for k in only):
            raise ApiError(400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request - "
                           "expected an array of strings for field 'only'")
        if queue is not None:
            typed(queue, "enabled", bool, where="queue.")
        for name, value in notebook_params.items():
            if not isinstance(value, (str, int, float, bool)):
                raise ApiError(400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request - "
                               f"expected a string for notebook_params.{name}")
        if python_params is not None and not all(isinstance(p, (str, int, float, bool)) for p in python_params):
            raise ApiError(400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request - "
                           "expected an array of strings for field 'python_params'")
        for name, value in params.items():
            if not isinstance(value, (str, int, float, bool)):
                raise ApiError(400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request - "
                               f"expected a string for job_parameters.{name}")
        with self._admit_lock:
            if token is not None:
                existing = self._by_token(f"job:{job_id}", token)
                if existing is not None:
                    return {"run_id": existing["run_id"], "number_in_job": existing["number_in_job"]}
            job = self._job(job_id)  # freshly parsed: a private copy
            settings = job["settings"]
            tasks = settings.get("tasks") or []
            if only is not None:
                keys = {t["task_key"] for t in tasks}
                unknown = [k for k in only if k not in keys]
                if unknown:
                    raise invalid(f"Task keys {unknown} given in 'only' do not exist in job {job_id}")
                tasks = [t for t in tasks if t["task_key"] in only]
                for t in tasks:
                    t["depends_on"] = [d for d in t.get("depends_on") or [] if d["task_key"] in only]
            if not tasks:
                raise invalid(f"Job {job_id} has no tasks to run")
            for t in tasks:
                if notebook_params and "notebook_task" in t:
                    t["notebook_task"].setdefault("base_parameters", {}).update(
                        {k: str(v) for k, v in notebook_params.items()})
                if python_params is not None and "spark_python_task" in t:
                    t["spark_python_task"]["parameters"] = [str(p) for p in python_params]
            definitions = settings.get("parameters") or []
            defined = {p["name"] for p in definitions}
            for name in params:
                if name not in defined:
                    log.warning("job %s: job parameter %s is not defined in the job settings", job_id, name)
            job_params = [{"name": p["name"], "default": str(p["default"]),
                           "value": str(params.get(p["name"], p["default"]))} for p in definitions]
            job_params += [{"name": k, "value": str(v)} for k, v in params.items() if k not in defined]
            queue_enabled = bool((queue or settings.get("queue") or {}).get("enabled", False))
            run = self._new_run(job_id=job_id, run_name=settings.get("name") or "Untitled", kind="JOB_RUN",
                                trigger="ONE_TIME", tasks=tasks, settings=settings, job_params=job_params,
                                idem=(f"job:{job_id}", token) if token is not None else None,
                                principal=req.principal)
            self._admit(run, settings.get("max_concurrent_runs", 1), queue_enabled)
        return {"run_id": run["run_id"], "number_in_job": run["number_in_job"]}

    def submit(self, req: Request) -> dict:
        token = self._idempotency(req)
        tasks = req.field("tasks", list, required=True)
        if not tasks:
            raise invalid("Missing required field: tasks")
        run_name = req.field("run_name", str) or "Untitled"
        timeout = req.field("timeout_seconds", int) or 0
        if timeout < 0:
            raise invalid("timeout_seconds must not be negative")
        settings = validate_settings({"name": run_name, "tasks": tasks, "timeout_seconds": timeout,
                                      "environments": req.field("environments", list) or []})
        with self._admit_lock:
            if token is not None:
                existing = self._by_token("submit", token)
                if existing is not None:
                    return {"run_id": existing["run_id"]}
            job_id = self.store.next_id("job", JOB_ID_START)
            run = self._new_run(job_id=job_id, run_name=run_name, kind="SUBMIT_RUN", trigger="ONE_TIME",
                                tasks=settings["tasks"], settings=settings, job_params=[],
                                idem=("submit", token) if token is not None else None, principal=req.principal)
            self._admit(run, None, False)
        return {"run_id": run["run_id"]}

    def trigger_child(self, job_id: int, job_parameters: dict, parent_run_id: int) -> dict:
        """Start a run of ``job_id`` for a run_job_task; returns the new run document."""
        job = self._job(job_id)  # freshly parsed: a private copy
        settings = job["settings"]
        definitions = settings.get("parameters") or []
        job_params = [{"name": p["name"], "default": str(p["default"]),
                       "value": str(job_parameters.get(p["name"], p["default"]))} for p in definitions]
        if not settings.get("tasks"):
            raise invalid(f"Job {job_id} has no tasks to run")
        with self._admit_lock:
            run = self._new_run(job_id=job_id, run_name=settings.get("name") or "Untitled", kind="JOB_RUN",
                                trigger="RUN_JOB_TASK", tasks=settings["tasks"], settings=settings,
                                job_params=job_params, idem=None, principal=None)
            self._admit(run, settings.get("max_concurrent_runs", 1),
                        bool((settings.get("queue") or {}).get("enabled", False)))
        return run

    def _idempotency(self, req: Request) -> str | None:
        token = req.field("idempotency_token", str)
        if token is not None and len(token) > 64:
            raise invalid("idempotency_token must be at most 64 characters")
        return token or None

    def _by_token(self, scope: str, token: str) -> dict | None:
        rows = self.store.query("SELECT doc FROM runs WHERE idem_scope = ? AND idem_token = ?", (scope, token))
        return json.loads(rows[0][0]) if rows else None

    def run_page_url(self, job_id: int, run_id: int) -> str:
        return f"{self.host}/?o={self.workspace_id}#job/{job_id}/run/{run_id}"

    def _new_run(self, *, job_id, run_name, kind, trigger, tasks, settings, job_params, idem, principal) -> dict:
        run_id = self.store.next_id("run", RUN_ID_START)
        now = now_ms()
        task_docs = []
        for t in tasks:
            task_run_id = self.store.next_id("run", RUN_ID_START)
            entry = dict(t)  # callers pass task settings of their own (parsed or validated copies)
            entry.update({
                "run_id": task_run_id, "attempt_number": 0,
                "state": {"life_cycle_state": "PENDING", "state_message": "", "user_cancelled_or_timedout": False},
                "status": {"state": "PENDING"},
                "start_time": 0, "setup_duration": 0, "execution_duration": 0, "cleanup_duration": 0,
                "end_time": 0, "run_page_url": self.run_page_url(job_id, task_run_id),
            })
            task_docs.append(entry)
            self.store.execute("INSERT INTO task_runs (run_id, parent_run_id, task_key, output) VALUES (?, ?, ?, NULL)",
                               (task_run_id, run_id, t["task_key"]))
        run = {
            "job_id": job_id, "run_id": run_id, "number_in_job": run_id, "original_attempt_run_id": run_id,
            "creator_user_name": principal or self.user_name, "run_name": run_name, "run_type": kind,
            "trigger": trigger, "format": "MULTI_TASK", "attempt_number": 0,
            "state": {"life_cycle_state": "PENDING", "state_message": "", "user_cancelled_or_timedout": False},
            "status": {"state": "PENDING"},
            "start_time": now, "setup_duration": 0, "execution_duration": 0, "cleanup_duration": 0,
            "end_time": 0, "run_duration": 0, "queue_duration": 0,
            "tasks": task_docs, "job_parameters": job_params,
            "run_page_url": self.run_page_url(job_id, run_id),
            "_x": {"timeout_seconds": settings.get("timeout_seconds") or 0,
                   "environments": settings.get("environments") or [],
                   "job_name": settings.get("name") or "Untitled"},
        }
        if not job_params:
            del run["job_parameters"]
        scope, token = idem if idem else (None, None)
        self.store.execute(
            "INSERT INTO runs (run_id, job_id, kind, active, queued, start_time, idem_scope, idem_token, doc) "
            "VALUES (?, ?, ?, 1, 0, ?, ?, ?, ?)", (run_id, job_id, kind, now, scope, token, Store.dumps(run)))
        return run

    def _active_run_ids(self, job_id: int, *, queued: bool | None = None) -> list[int]:
        sql = "SELECT run_id FROM runs WHERE job_id = ? AND active = 1"
        if queued is not None:
            sql += f" AND queued = {1 if queued else 0}"
        return [r[0] for r in self.store.query(sql + " ORDER BY run_id", (job_id,))]

    def _admit(self, run: dict, max_concurrent: int | None, queue_enabled: bool) -> None:
        """Start, queue or skip a new run according to the job's concurrency limit."""
        orchestrator = self.orchestrator
        if max_concurrent is not None:
            running = [r for r in self._active_run_ids(run["job_id"], queued=False) if r != run["run_id"]]
            queued = [r for r in self._active_run_ids(run["job_id"], queued=True) if r != run["run_id"]]
            if len(running) >= max_concurrent or (queued and queue_enabled):
                if queue_enabled and max_concurrent > 0:
                    message = (f"Queued due to reaching maximum concurrent runs of {max_concurrent}.")
                    run["state"].update(life_cycle_state="QUEUED", state_message=message)
                    run["status"] = {"state": "QUEUED", "queue_details": {
                        "code": "MAX_CONCURRENT_RUNS_REACHED", "message": message}}
                    for t in run["tasks"]:
                        t["state"]["life_cycle_state"] = "QUEUED"
                        t["status"] = {"state": "QUEUED"}
                    self.save_run(run, queued=True)
                    return
                message = (f"Skipping this run because the limit of {max_concurrent} maximum concurrent runs "
                           f"has been reached.")
                end = now_ms()
                run["state"] = {"life_cycle_state": "SKIPPED", "result_state": "MAXIMUM_CONCURRENT_RUNS_REACHED",
                                "state_message": message, "user_cancelled_or_timedout": False}
                run["status"] = {"state": "TERMINATED", "termination_details": {
                    "code": "MAX_CONCURRENT_RUNS_EXCEEDED", "type": "CLIENT_ERROR", "message": message}}
                run["end_time"] = end
                for t in run["tasks"]:
                    t["state"] = {"life_cycle_state": "SKIPPED", "result_state": "MAXIMUM_CONCURRENT_RUNS_REACHED",
                                  "state_message": message, "user_cancelled_or_timedout": False}
                    t["status"] = {"state": "TERMINATED", "termination_details": {
                        "code": "SKIPPED", "type": "SUCCESS", "message": message}}
                self.save_run(run, active=False)
                return
        if orchestrator is not None:
            orchestrator.start(run)

    def start_queued(self, job_id: int) -> None:
        """After a run of ``job_id`` ended: start queued runs while there is room."""
        with self._admit_lock:
            rows = self.store.query("SELECT doc FROM jobs WHERE job_id = ?", (job_id,))
            max_concurrent = json.loads(rows[0][0])["settings"].get("max_concurrent_runs", 1) if rows else 1
            running = self._active_run_ids(job_id, queued=False)
            for run_id in self._active_run_ids(job_id, queued=True):
                if len(running) >= max_concurrent:
                    break
                run = self.load_run(run_id)
                now = now_ms()
                run["queue_duration"] = now - run["start_time"]
                run["state"].update(life_cycle_state="PENDING", state_message="")
                run["status"] = {"state": "PENDING"}
                for t in run["tasks"]:
                    t["state"]["life_cycle_state"] = "PENDING"
                    t["status"] = {"state": "PENDING"}
                self.save_run(run, queued=False)
                running.append(run_id)
                if self.orchestrator is not None:
                    self.orchestrator.start(run)

    # ---- run documents ------------------------------------------------------

    def load_run(self, run_id: int) -> dict:
        if not fits_int64(run_id):
            raise invalid(f"Run {run_id} does not exist.")
        rows = self.store.query("SELECT doc FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise invalid(f"Run {run_id} does not exist.")
        return json.loads(rows[0][0])

    def save_run(self, run: dict, *, active: bool | None = None, queued: bool | None = None) -> None:
        if active is None:
            active = run["state"]["life_cycle_state"] in ACTIVE_STATES
        sets = ["doc = ?", "active = ?"]
        args: list = [Store.dumps(run), 1 if active else 0]
        if queued is not None:
            sets.append("queued = ?")
            args.append(1 if queued else 0)
        elif not active:
            sets.append("queued = 0")
        self.store.execute(f"UPDATE runs SET {', '.join(sets)} WHERE run_id = ?", (*args, run["run_id"]))

    def save_task_output(self, task_run_id: int, parent_run_id: int, task_key: str, output: dict) -> None:
        self.store.execute(
            "INSERT OR REPLACE INTO task_runs (run_id, parent_run_id, task_key, output) VALUES (?, ?, ?, ?)",
            (task_run_id, parent_run_id, task_key, Store.dumps(output)))

    def _resolve(self, run_id: int) -> tuple[dict, dict | None]:
        """(parent run, task entry or None) for a parent or task run id."""
        if not fits_int64(run_id):
            raise invalid(f"Run {run_id} does not exist.")
        rows = self.store.query("SELECT doc FROM runs WHERE run_id = ?", (run_id,))
        if rows:
            return json.loads(rows[0][0]), None
        rows = self.store.query("SELECT parent_run_id, output FROM task_runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise invalid(f"Run {run_id} does not exist.")
        parent = self.load_run(rows[0][0])
        for t in parent["tasks"]:
            if t["run_id"] == run_id:
                return parent, t
        output = json.loads(rows[0][1]) if rows[0][1] else {}
        return parent, output.get("_task") or {"run_id": run_id}

    def _task_view(self, parent: dict, task: dict) -> dict:
        view = {k: v for k, v in task.items() if not k.startswith("_")}
        view.update({"job_id": parent["job_id"], "run_type": parent["run_type"],
                     "creator_user_name": parent["creator_user_name"], "number_in_job": parent["number_in_job"],
                     "original_attempt_run_id": task.get("_original_run_id", task["run_id"]),
                     "run_name": task.get("task_key"), "trigger": parent.get("trigger"),
                     "format": "MULTI_TASK", "parent_run_id": parent["run_id"]})
        view["tasks"] = [{k: v for k, v in task.items() if not k.startswith("_")}]
        return view

    # ---- runs API -----------------------------------------------------------

    def get_run(self, req: Request) -> dict:
        run_id = req.int_arg("run_id", required=True)
        parent, task = self._resolve(run_id)
        if task is not None:
            return self._task_view(parent, task)
        return public(parent)

    def get_output(self, req: Request) -> dict:
        run_id = req.int_arg("run_id", required=True)
        parent, task = self._resolve(run_id)
        if task is None:
            # Jobs 2.1+ answers this for every parent run id, even of a one-task run: outputs belong to
            # task runs (clients written against the local workspace must not rely on more).
            raise invalid("Retrieving the output of runs with multiple tasks is not supported. "
                          "Please retrieve the output of each individual task run instead.")
        rows = self.store.query("SELECT output FROM task_runs WHERE run_id = ?", (task["run_id"],))
        output = json.loads(rows[0][0]) if rows and rows[0][0] else {}
        output.pop("_task", None)
        out = {"metadata": self._task_view(parent, task)}
        out.update(output)
        return out

    def list_runs(self, req: Request) -> dict:
        limit = req.int_arg("limit", default=20)
        if limit < 0 or limit > MAX_RUNS_PAGE:
            raise invalid(f"The limit must be between 0 and {MAX_RUNS_PAGE}, got {limit}")
        limit = limit or MAX_RUNS_PAGE
        offset = req.int_arg("offset", default=0)
        if not 0 <= offset <= INT64_MAX:
            raise invalid(f"The offset must not be negative, got {offset}")
        active_only = req.bool_arg("active_only")
        completed_only = req.bool_arg("completed_only")
        if active_only and completed_only:
            raise invalid("active_only and completed_only cannot both be true")
        expand = req.bool_arg("expand_tasks")
        job_id = req.int_arg("job_id")
        if job_id is not None and not fits_int64(job_id):
            raise invalid(f"Job {job_id} does not exist.")
        run_type = req.arg("run_type")
        if run_type is not None and run_type not in ("JOB_RUN", "SUBMIT_RUN", "WORKFLOW_RUN"):
            raise invalid(f"Invalid run_type {run_type!r}; use JOB_RUN, SUBMIT_RUN or WORKFLOW_RUN")
        where, args = [], []
        if job_id is not None:
            where.append("job_id = ?")
            args.append(job_id)
        if active_only:
            where.append("active = 1")
        if completed_only:
            where.append("active = 0")
        if run_type:
            where.append("kind = ?")
            args.append(run_type)
        start_from = req.int_arg("start_time_from")
        start_to = req.int_arg("start_time_to")
        for name, value in (("start_time_from", start_from), ("start_time_to", start_to)):
            if value is not None and not fits_int64(value):
                raise invalid(f"Invalid value for parameter {name}: {value} is out of range")
        if start_from is not None:
            where.append("start_time >= ?")
            args.append(start_from)
        if start_to is not None:
            where.append("start_time <= ?")
            args.append(start_to)
        token = req.arg("page_token")
        docs, has_more = self._page("runs", "run_id", where, args, limit, offset, token)
        docs = [public(doc) for doc in docs]
        for doc in docs:
            if not expand:
                doc.pop("tasks", None)
            else:
                doc["has_more"] = False
        out: dict = {"has_more": has_more}
        if docs:
            out["runs"] = docs
        if has_more:
            out["next_page_token"] = encode_token({"before": docs[-1]["run_id"]})
        return out

    def cancel(self, req: Request) -> dict:
        run_id = req.field("run_id", int, required=True)
        parent, _task = self._resolve(run_id)
        if self.orchestrator is not None:
            self.orchestrator.cancel(parent["run_id"])
        return {}

    def cancel_all(self, req: Request) -> dict:
        job_id = req.field("job_id", int)
        all_queued = req.field("all_queued_runs", bool, default=False)
        if job_id is None and not all_queued:
            raise invalid("Either job_id or all_queued_runs must be given")
        if job_id is not None:
            self._job(job_id)
            ids = self._active_run_ids(job_id)
        else:
            ids = [r[0] for r in self.store.query("SELECT run_id FROM runs WHERE active = 1 AND queued = 1")]
        if self.orchestrator is not None:
            for run_id in ids:
                self.orchestrator.cancel(run_id)
        return {}

    def delete_run(self, req: Request) -> dict:
        run_id = req.field("run_id", int, required=True)
        run = self.load_run(run_id)
        if run["state"]["life_cycle_state"] in ACTIVE_STATES:
            raise ApiError(400, "INVALID_STATE", f"Run {run_id} is active: cancel it before deleting it.")
        with self.store.transaction():
            self.store.execute("DELETE FROM task_runs WHERE parent_run_id = ?", (run_id,))
            self.store.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        return {}

    def recover(self) -> int:
        """End runs left active by a previous server process (see the module docstring)."""
        rows = self.store.query("SELECT doc FROM runs WHERE active = 1")
        message = ("The local workspace server stopped while this run was active; "
                   "its tasks were killed and it will not resume.")
        for (text,) in rows:
            run = json.loads(text)
            end_as_internal_error(run, message)
            self.save_run(run, active=False, queued=False)
        return len(rows)


def end_as_internal_error(run: dict, message: str) -> None:
    end = now_ms()
    for t in run["tasks"]:
        if t["state"]["life_cycle_state"] not in TERMINAL_STATES:
            t["state"] = {"life_cycle_state": "INTERNAL_ERROR", "result_state": "FAILED",
                          "state_message": message, "user_cancelled_or_timedout": False}
            t["status"] = {"state": "TERMINATED", "termination_details": {
                "code": "INTERNAL_ERROR", "type": "INTERNAL_ERROR", "message": message}}
            t["end_time"] = end
    run["state"] = {"life_cycle_state": "INTERNAL_ERROR", "result_state": "FAILED",
                    "state_message": message, "user_cancelled_or_timedout": False}
    run["status"] = {"state": "TERMINATED", "termination_details": {
        "code": "INTERNAL_ERROR", "type": "INTERNAL_ERROR", "message": message}}
    run["end_time"] = end
    run["run_duration"] = end - run["start_time"]


__all__ = ["JobsService", "ACTIVE_STATES", "TERMINAL_STATES", "termination_type", "typed"]
