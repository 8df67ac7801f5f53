"""Jobs runs through databricks-sdk against the local workspace, with the scripted task runner.

The scripted runner (see workspace_support.py) stands in for the process executor so that
these tests exercise the orchestration: run-now/submit, run documents, outputs,
run_if, conditions, retries, timeouts, cancellation, concurrency and listing.
Real processes are covered by test_server_runs_real.py.
"""

from __future__ import annotations

import threading
import time

import pytest
from databricks.sdk import errors
from databricks.sdk.service import jobs

from workspace_support import py_task, raw_calls, wait_run, wait_task_state

MULTI_TASK_OUTPUT = ("Retrieving the output of runs with multiple tasks is not supported. "
                     "Please retrieve the output of each individual task run instead.")


def make_job(w, *tasks, **settings):
    settings.setdefault("name", "job")
    return w.jobs.create(tasks=[jobs.Task.from_dict(t) for t in tasks], **settings).job_id


def by_key(run):
    return {t.task_key: t for t in run.tasks}


def states(run):
    """{task_key: (life_cycle_state, result_state)} of a run."""
    return {t.task_key: (t.state.life_cycle_state.value, t.state.result_state.value if t.state.result_state else None)
            for t in run.tasks}


def run_state(run):
    return run.state.life_cycle_state.value, run.state.result_state.value if run.state.result_state else None


# ---------------------------------------------------------------------------- run-now, runs/get, get-output

def test_run_now_multi_task_documents(scripted):
    ws, w, runner = scripted
    job_id = make_job(w, py_task("a", "value", "k", "7"), py_task("b", "echo", "{{job.parameters.p}}", deps=["a"]),
                      parameters=[jobs.JobParameterDefinition(name="p", default="1"),
                                  jobs.JobParameterDefinition(name="q", default="x")])
    waiter = w.jobs.run_now(job_id, job_parameters={"p": "2"})
    run = wait_run(w, waiter.run_id)

    assert run_state(run) == ("TERMINATED", "SUCCESS")
    assert run.status.state == jobs.RunLifecycleStateV2State.TERMINATED
    assert run.status.termination_details.code == jobs.TerminationCodeCode.SUCCESS
    assert run.status.termination_details.type == jobs.TerminationTypeType.SUCCESS
    assert run.job_id == job_id and run.run_type == jobs.RunType.JOB_RUN
    assert run.run_page_url == f"{ws.url}/?o={ws.workspace_id}#job/{job_id}/run/{run.run_id}"
    assert run.start_time > 0 and run.end_time >= run.start_time
    assert run.attempt_number == 0 and run.original_attempt_run_id == run.run_id
    assert {p.name: p.value for p in run.job_parameters} == {"p": "2", "q": "x"}

    tasks = by_key(run)
    assert list(tasks) == ["a", "b"]
    ids = {t.run_id for t in run.tasks}
    assert len(ids) == 2 and run.run_id not in ids
    for t in run.tasks:
        assert t.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED
        assert t.state.result_state == jobs.RunResultState.SUCCESS
        assert t.run_page_url.endswith(f"#job/{job_id}/run/{t.run_id}")
        assert t.start_time > 0 and t.end_time >= t.start_time
        assert t.attempt_number == 0
    assert tasks["b"].start_time >= tasks["a"].end_time  # dependency order
    assert tasks["b"].depends_on[0].task_key == "a"

    # the orchestrator passed resolved job parameters, upstream values and substituted references
    call_b = next(c for c in runner.calls if c["task"]["task_key"] == "b")
    assert call_b["job_parameters"] == {"p": "2", "q": "x"}
    assert call_b["upstream"] == {"a": {"k": "7"}}
    assert call_b["task"]["spark_python_task"]["parameters"] == ["echo", "2"]

    # a task run id can be read on its own
    task_run = w.jobs.get_run(tasks["b"].run_id)
    assert task_run.run_id == tasks["b"].run_id
    assert task_run.state.result_state == jobs.RunResultState.SUCCESS
    out = w.jobs.get_run_output(tasks["b"].run_id)
    assert out.logs == "2"
    assert out.metadata.tasks[0].task_key == "b" and out.metadata.job_id == job_id
    assert out.metadata.run_id == tasks["b"].run_id

    # the SDK's own waiter accepts the document (only known enum values)
    assert w.jobs.wait_get_run_job_terminated_or_skipped(run.run_id).state.result_state == jobs.RunResultState.SUCCESS


def test_get_output_of_a_parent_run_is_rejected_like_the_real_service(scripted, ws_api):
    ws, w, _ = scripted
    multi = wait_run(w, w.jobs.run_now(make_job(w, py_task("a"), py_task("b"))).run_id)
    single = wait_run(w, w.jobs.run_now(make_job(w, py_task("only"))).run_id)
    for run in (multi, single):  # Jobs 2.1+: even a one-task parent is refused
        with pytest.raises(errors.InvalidParameterValue) as info:
            w.jobs.get_run_output(run.run_id)
        assert str(info.value) == MULTI_TASK_OUTPUT
        resp = ws_api("GET", "/api/2.2/jobs/runs/get-output", params={"run_id": run.run_id})
        assert resp.status_code == 400
        assert resp.json() == {"error_code": "INVALID_PARAMETER_VALUE", "message": MULTI_TASK_OUTPUT}
    assert w.jobs.get_run_output(single.tasks[0].run_id).logs == "ok"


def test_failure_rolls_up_to_the_parent(scripted):
    _, w, _ = scripted
    job_id = make_job(w, py_task("prep"), py_task("train", "fail", "no data", deps=["prep"]),
                      py_task("deploy", deps=["train"]))
    run = wait_run(w, w.jobs.run_now(job_id).run_id)
    assert run_state(run) == ("INTERNAL_ERROR", "FAILED")
    assert run.state.state_message == ("Task train failed with message: Workload failed, see run output for details. "
                                       "This caused all downstream tasks to get skipped.")
    assert run.status.state == jobs.RunLifecycleStateV2State.TERMINATED
    assert run.status.termination_details.code == jobs.TerminationCodeCode.RUN_EXECUTION_ERROR
    assert run.status.termination_details.type == jobs.TerminationTypeType.CLIENT_ERROR
    assert states(run) == {"prep": ("TERMINATED", "SUCCESS"), "train": ("TERMINATED", "FAILED"),
                           "deploy": ("SKIPPED", "UPSTREAM_FAILED")}
    train = by_key(run)["train"]
    assert train.state.state_message == "Workload failed, see run output for details"
    out = w.jobs.get_run_output(train.run_id)
    assert out.error == "Exception: no data"
    assert "Exception: no data" in out.error_trace
    assert out.logs == "failing\n"
    # the SDK waiter raises on INTERNAL_ERROR, with the real message
    with pytest.raises(errors.OperationFailed, match="Task train failed with message"):
        w.jobs.wait_get_run_job_terminated_or_skipped(run.run_id)


def test_submit_and_idempotency_tokens(scripted):
    _, w, runner = scripted
    first = w.jobs.submit(run_name="one-off", tasks=[jobs.SubmitTask.from_dict(py_task("t", "value", "x", "1"))],
                          idempotency_token="deploy-42")
    again = w.jobs.submit(run_name="one-off", tasks=[jobs.SubmitTask.from_dict(py_task("t"))],
                          idempotency_token="deploy-42")
    assert again.run_id == first.run_id
    run = wait_run(w, first.run_id)
    assert run.run_type == jobs.RunType.SUBMIT_RUN and run.run_name == "one-off"
    assert run_state(run) == ("TERMINATED", "SUCCESS")
    other = w.jobs.submit(run_name="one-off", tasks=[jobs.SubmitTask.from_dict(py_task("t"))],
                          idempotency_token="deploy-43")
    assert other.run_id != first.run_id
    wait_run(w, other.run_id)
    assert len(runner.calls) == 2  # the repeated submit launched nothing

    job_id = make_job(w, py_task("a"))
    a = w.jobs.run_now(job_id, idempotency_token="tok").run_id
    b = w.jobs.run_now(job_id, idempotency_token="tok").run_id
    c = w.jobs.run_now(job_id, idempotency_token="tok2").run_id
    assert a == b != c
    wait_run(w, a)
    wait_run(w, c)
    # a token of one job does not collide with the same token on another job
    d = w.jobs.run_now(make_job(w, py_task("a")), idempotency_token="tok").run_id
    assert d not in (a, c)
    wait_run(w, d)


def test_only_runs_a_subset(scripted, ws_api):
    _, w, runner = scripted
    job_id = make_job(w, py_task("a"), py_task("b", deps=["a"]), py_task("c", deps=["b"]))
    run = wait_run(w, w.jobs.run_now(job_id, only=["b", "c"]).run_id)
    assert [t.task_key for t in run.tasks] == ["b", "c"]
    assert run_state(run) == ("TERMINATED", "SUCCESS")
    assert [c["task"]["task_key"] for c in runner.calls] == ["b", "c"]
    resp = ws_api("POST", "/api/2.2/jobs/run-now", json={"job_id": job_id, "only": ["nope"]})
    assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "nope" in resp.json()["message"]


def test_notebook_params_and_python_params_reach_the_tasks(scripted):
    _, w, runner = scripted
    nb = {"task_key": "nb", "notebook_task": {"notebook_path": "/Shared/nb", "base_parameters": {"a": "1"}}}
    job_id = make_job(w, py_task("py", "echo", "x"), nb)
    # the scripted runner only knows spark_python_task; a notebook task still gets called with its settings
    wait_run(w, w.jobs.run_now(job_id, python_params=["echo", "y"], notebook_params={"b": "2"}).run_id)
    calls = {c["task"]["task_key"]: c["task"] for c in runner.calls}
    assert calls["py"]["spark_python_task"]["parameters"] == ["echo", "y"]
    assert calls["nb"]["notebook_task"]["base_parameters"] == {"a": "1", "b": "2"}


# ---------------------------------------------------------------------------- run_if and conditions

RUN_IF_CASES = {
    # run_if: expected downstream result for upstream outcomes (ok, ok), (ok, fail), (fail, fail)
    "ALL_SUCCESS": ("SUCCESS", "UPSTREAM_FAILED", "UPSTREAM_FAILED"),
    "AT_LEAST_ONE_SUCCESS": ("SUCCESS", "SUCCESS", "UPSTREAM_FAILED"),
    "NONE_FAILED": ("SUCCESS", "UPSTREAM_FAILED", "UPSTREAM_FAILED"),
    "ALL_DONE": ("SUCCESS", "SUCCESS", "SUCCESS"),
    "AT_LEAST_ONE_FAILED": ("EXCLUDED", "SUCCESS", "SUCCESS"),
    "ALL_FAILED": ("EXCLUDED", "EXCLUDED", "SUCCESS"),
}
UPSTREAMS = (("ok", "ok"), ("ok", "fail"), ("fail", "fail"))


@pytest.mark.parametrize("run_if", sorted(RUN_IF_CASES))
def test_run_if_matrix(scripted, run_if):
    _, w, _ = scripted
    for upstream, expected in zip(UPSTREAMS, RUN_IF_CASES[run_if]):
        job_id = make_job(w, py_task("u1", *upstream[0].split()), py_task("u2", *upstream[1].split()),
                          py_task("d", deps=["u1", "u2"], run_if=run_if))
        run = wait_run(w, w.jobs.run_now(job_id).run_id)
        d = by_key(run)["d"]
        got = d.state.result_state.value
        assert got == expected, (run_if, upstream, got)
        assert d.state.life_cycle_state.value == ("TERMINATED" if expected == "SUCCESS" else "SKIPPED")
        assert d.status.termination_details.code.value == ("SUCCESS" if expected == "SUCCESS" else "SKIPPED")
        any_failed = "fail" in upstream
        # the run's result follows its leaf (d): failed leaf -> FAILED; excluded counts as success
        if expected == "UPSTREAM_FAILED":
            assert run_state(run) == ("INTERNAL_ERROR", "FAILED")
            assert run.state.state_message.startswith("Task u")
        elif any_failed:
            assert run_state(run) == ("TERMINATED", "SUCCESS_WITH_FAILURES")
            assert run.status.termination_details.code == jobs.TerminationCodeCode.SUCCESS_WITH_FAILURES
        else:
            assert run_state(run) == ("TERMINATED", "SUCCESS")


def test_excluded_upstreams(scripted):
    _, w, runner = scripted
    job_id = make_job(
        w, py_task("a"),
        py_task("on_failure", deps=["a"], run_if="AT_LEAST_ONE_FAILED"),  # EXCLUDED (a succeeded)
        py_task("after_excluded", deps=["on_failure"]),  # every upstream excluded -> EXCLUDED too
        py_task("mixed", deps=["a", "on_failure"]),  # excluded upstreams count as success -> runs
    )
    run = wait_run(w, w.jobs.run_now(job_id).run_id)
    assert states(run) == {"a": ("TERMINATED", "SUCCESS"), "on_failure": ("SKIPPED", "EXCLUDED"),
                           "after_excluded": ("SKIPPED", "EXCLUDED"), "mixed": ("TERMINATED", "SUCCESS")}
    assert run_state(run) == ("TERMINATED", "SUCCESS")
    assert sorted(c["task"]["task_key"] for c in runner.calls) == ["a", "mixed"]


def test_condition_task_with_dynamic_references(scripted):
    _, w, runner = scripted
    job_id = make_job(
        w,
        py_task("count", "value", "rows", "12"),
        {"task_key": "enough", "depends_on": [{"task_key": "count"}],
         "condition_task": {"op": "GREATER_THAN", "left": "{{tasks.count.values.rows}}", "right": "10"}},
        {"task_key": "is_prod", "condition_task": {"op": "EQUAL_TO", "left": "{{job.parameters.env}}",
                                                    "right": "prod"}},
        py_task("train", deps=[{"task_key": "enough", "outcome": "true"}]),
        py_task("alert", deps=[{"task_key": "enough", "outcome": "false"}]),
        py_task("deploy", deps=[{"task_key": "is_prod", "outcome": "true"}, "train"]),
        py_task("skip_note", deps=[{"task_key": "is_prod", "outcome": "false"}]),
        parameters=[jobs.JobParameterDefinition(name="env", default="prod")])
    run = wait_run(w, w.jobs.run_now(job_id, job_parameters={"env": "staging"}).run_id)
    assert states(run) == {
        "count": ("TERMINATED", "SUCCESS"), "enough": ("TERMINATED", "SUCCESS"), "is_prod": ("TERMINATED", "SUCCESS"),
        "train": ("TERMINATED", "SUCCESS"), "alert": ("SKIPPED", "EXCLUDED"),
        "deploy": ("TERMINATED", "SUCCESS"),  # one excluded edge, one success: runs
        "skip_note": ("TERMINATED", "SUCCESS"),
    }
    tasks = by_key(run)
    assert tasks["enough"].condition_task.outcome == "true"
    assert tasks["enough"].condition_task.left == "{{tasks.count.values.rows}}"  # settings keep the reference
    assert tasks["is_prod"].condition_task.outcome == "false"
    assert run_state(run) == ("TERMINATED", "SUCCESS")
    assert "enough" not in {c["task"]["task_key"] for c in runner.calls}  # conditions never reach the runner

    # a numeric comparison of something that is not a number fails the condition task
    bad = make_job(w, {"task_key": "c", "condition_task": {"op": "LESS_THAN", "left": "abc", "right": "1"}})
    run = wait_run(w, w.jobs.run_now(bad).run_id)
    assert states(run) == {"c": ("TERMINATED", "FAILED")}
    assert "abc" in w.jobs.get_run_output(run.tasks[0].run_id).error


# ---------------------------------------------------------------------------- retries and timeouts

def test_retries_until_success(scripted):
    _, w, runner = scripted
    job_id = make_job(w, py_task("flaky", "flaky", "2", max_retries=3, min_retry_interval_millis=300))
    run_id = w.jobs.run_now(job_id).run_id
    waiting = wait_task_state(w, run_id, "flaky", "WAITING_FOR_RETRY")
    first_id = by_key(waiting)["flaky"].run_id
    run = wait_run(w, run_id)
    flaky = by_key(run)["flaky"]
    assert run_state(run) == ("TERMINATED", "SUCCESS")
    assert flaky.attempt_number == 2
    assert flaky.run_id != first_id
    assert runner.attempts["flaky"] == 3
    # earlier attempts keep their own output
    assert w.jobs.get_run_output(run.tasks[0].run_id).logs == "attempt 3"
    first = w.jobs.get_run_output(first_id)
    assert first.error == "Exception: attempt 1"
    assert first.metadata.state.result_state == jobs.RunResultState.FAILED
    # retries wait min_retry_interval_millis (the last one after the second attempt, itself after the first)
    assert flaky.start_time - first.metadata.end_time >= 250
    assert first.metadata.attempt_number == 0
    assert first.metadata.run_id == first_id


def test_retries_exhausted(scripted):
    _, w, runner = scripted
    job_id = make_job(w, py_task("flaky", "flaky", "5", max_retries=1))
    run = wait_run(w, w.jobs.run_now(job_id).run_id)
    assert run_state(run) == ("INTERNAL_ERROR", "FAILED")
    assert by_key(run)["flaky"].attempt_number == 1
    assert runner.attempts["flaky"] == 2


def test_task_timeout(scripted):
    _, w, runner = scripted
    job_id = make_job(w, py_task("slow", "sleep", "30", timeout_seconds=1), py_task("next", deps=["slow"]))
    started = time.monotonic()
    run = wait_run(w, w.jobs.run_now(job_id).run_id)
    assert time.monotonic() - started < 15
    assert runner.calls[0]["timeout"] == 1
    assert states(run) == {"slow": ("TERMINATED", "TIMEDOUT"), "next": ("SKIPPED", "UPSTREAM_FAILED")}
    slow = by_key(run)["slow"]
    assert slow.state.user_cancelled_or_timedout is True
    assert slow.status.termination_details.code == jobs.TerminationCodeCode.CANCELED
    assert run_state(run) == ("INTERNAL_ERROR", "FAILED")
    assert run.state.state_message.startswith("Task slow failed with message:")


def test_job_timeout(scripted):
    _, w, _ = scripted
    job_id = make_job(w, py_task("slow", "sleep", "30"), py_task("after", deps=["slow"]), timeout_seconds=1)
    started = time.monotonic()
    run = wait_run(w, w.jobs.run_now(job_id).run_id)
    assert time.monotonic() - started < 15
    assert run_state(run) == ("TERMINATED", "TIMEDOUT")
    assert run.state.user_cancelled_or_timedout is True
    assert run.status.termination_details.code == jobs.TerminationCodeCode.CANCELED
    assert states(run) == {"slow": ("TERMINATED", "TIMEDOUT"), "after": ("SKIPPED", "UPSTREAM_CANCELED")}

    # submit's own timeout_seconds
    sub = w.jobs.submit(run_name="s", timeout_seconds=1, tasks=[jobs.SubmitTask.from_dict(py_task("t", "sleep", "30"))])
    assert run_state(wait_run(w, sub.run_id)) == ("TERMINATED", "TIMEDOUT")


# ---------------------------------------------------------------------------- cancellation

def test_cancel_a_running_run(scripted):
    _, w, _ = scripted
    job_id = make_job(w, py_task("long", "sleep", "60"), py_task("after", deps=["long"]))
    run_id = w.jobs.run_now(job_id).run_id
    wait_task_state(w, run_id, "long", "RUNNING")
    started = time.monotonic()
    w.jobs.cancel_run(run_id)  # asynchronous: returns a waiter
    run = wait_run(w, run_id)
    assert time.monotonic() - started < 10
    assert run_state(run) == ("TERMINATED", "CANCELED")
    assert run.state.user_cancelled_or_timedout is True
    assert run.status.termination_details.code == jobs.TerminationCodeCode.USER_CANCELED
    assert states(run) == {"long": ("TERMINATED", "CANCELED"), "after": ("SKIPPED", "UPSTREAM_CANCELED")}
    # cancelling a finished run is a no-op
    w.jobs.cancel_run(run_id)
    assert run_state(w.jobs.get_run(run_id)) == ("TERMINATED", "CANCELED")
    # cancelling by a task run id cancels its run
    run_id = w.jobs.run_now(job_id).run_id
    task_id = by_key(wait_task_state(w, run_id, "long", "RUNNING"))["long"].run_id
    w.jobs.cancel_run(task_id)
    assert run_state(wait_run(w, run_id)) == ("TERMINATED", "CANCELED")


def test_cancel_all_runs_of_a_job(scripted):
    _, w, _ = scripted
    job_id = make_job(w, py_task("long", "sleep", "60"), max_concurrent_runs=3)
    other = make_job(w, py_task("long", "sleep", "0.5"))
    ids = [w.jobs.run_now(job_id).run_id for _ in range(3)]
    keep = w.jobs.run_now(other).run_id
    for run_id in ids:
        wait_task_state(w, run_id, "long", "RUNNING")
    w.jobs.cancel_all_runs(job_id=job_id)
    for run_id in ids:
        assert run_state(wait_run(w, run_id)) == ("TERMINATED", "CANCELED")
    assert run_state(wait_run(w, keep)) == ("TERMINATED", "SUCCESS")


# ---------------------------------------------------------------------------- concurrency

def test_max_concurrent_runs_skips_without_queue(scripted):
    _, w, _ = scripted
    job_id = make_job(w, py_task("long", "sleep", "60"), max_concurrent_runs=1)
    first = w.jobs.run_now(job_id).run_id
    wait_task_state(w, first, "long", "RUNNING")
    second = w.jobs.run_now(job_id).run_id
    run = w.jobs.get_run(second)
    assert run_state(run) == ("SKIPPED", "MAXIMUM_CONCURRENT_RUNS_REACHED")
    assert run.state.state_message == "Skipping this run because the limit of 1 maximum concurrent runs has been reached."
    assert run.status.termination_details.code == jobs.TerminationCodeCode.MAX_CONCURRENT_RUNS_EXCEEDED
    # the SDK waiter returns a SKIPPED run (the caller must look at result_state)
    assert w.jobs.wait_get_run_job_terminated_or_skipped(second).state.life_cycle_state == jobs.RunLifeCycleState.SKIPPED
    w.jobs.cancel_run(first)
    wait_run(w, first)


def test_max_concurrent_runs_queues_when_enabled(scripted):
    _, w, runner = scripted
    job_id = make_job(w, py_task("work", "sleep", "0.6"), max_concurrent_runs=1,
                      queue=jobs.QueueSettings(enabled=True))
    ids = [w.jobs.run_now(job_id).run_id for _ in range(3)]
    queued = w.jobs.get_run(ids[2])
    assert queued.state.life_cycle_state == jobs.RunLifeCycleState.QUEUED
    assert queued.status.state == jobs.RunLifecycleStateV2State.QUEUED
    assert queued.status.queue_details.code == jobs.QueueDetailsCodeCode.MAX_CONCURRENT_RUNS_REACHED
    runs = [wait_run(w, run_id) for run_id in ids]
    assert all(run_state(r) == ("TERMINATED", "SUCCESS") for r in runs)
    # one at a time, in order
    spans = sorted((by_key(r)["work"].start_time, by_key(r)["work"].end_time, r.run_id) for r in runs)
    assert [s[2] for s in spans] == ids
    for before, after in zip(spans, spans[1:]):
        assert after[0] >= before[1]
    assert runs[2].queue_duration > 0

    # a queued run can be cancelled before it starts
    ids = [w.jobs.run_now(job_id).run_id for _ in range(2)]
    w.jobs.cancel_run(ids[1])
    cancelled = wait_run(w, ids[1])
    assert run_state(cancelled) == ("TERMINATED", "CANCELED")
    assert run_state(wait_run(w, ids[0])) == ("TERMINATED", "SUCCESS")
    calls = len(runner.calls)
    assert calls == 4


def test_run_now_queue_override(scripted):
    _, w, _ = scripted
    job_id = make_job(w, py_task("work", "sleep", "0.5"), max_concurrent_runs=1)
    a = w.jobs.run_now(job_id).run_id
    b = w.jobs.run_now(job_id, queue=jobs.QueueSettings(enabled=True)).run_id
    assert w.jobs.get_run(b).state.life_cycle_state == jobs.RunLifeCycleState.QUEUED
    assert run_state(wait_run(w, a)) == ("TERMINATED", "SUCCESS")
    assert run_state(wait_run(w, b)) == ("TERMINATED", "SUCCESS")


# ---------------------------------------------------------------------------- run_job_task

def test_run_job_task_reflects_the_child_run(scripted):
    _, w, runner = scripted
    child_ok = make_job(w, py_task("c", "echo", "{{job.parameters.who}}"), name="child-ok",
                        parameters=[jobs.JobParameterDefinition(name="who", default="nobody")])
    child_bad = make_job(w, py_task("c", "fail", "child broke"), name="child-bad")
    parent = make_job(w, {"task_key": "call_ok", "run_job_task": {"job_id": child_ok,
                                                                    "job_parameters": {"who": "{{job.parameters.me}}"}}},
                      {"task_key": "call_bad", "run_job_task": {"job_id": child_bad}},
                      parameters=[jobs.JobParameterDefinition(name="me", default="parent")])
    run = wait_run(w, w.jobs.run_now(parent).run_id, timeout=30)
    assert states(run) == {"call_ok": ("TERMINATED", "SUCCESS"), "call_bad": ("TERMINATED", "FAILED")}
    ok_out = w.jobs.get_run_output(by_key(run)["call_ok"].run_id)
    child_run = w.jobs.get_run(ok_out.run_job_output.run_id)
    assert child_run.job_id == child_ok
    assert run_state(child_run) == ("TERMINATED", "SUCCESS")
    assert w.jobs.get_run_output(child_run.tasks[0].run_id).logs == "parent"
    bad_out = w.jobs.get_run_output(by_key(run)["call_bad"].run_id)
    assert "child broke" in (bad_out.error or "") or "Task c failed" in (bad_out.error or "")
    assert run_state(run) == ("INTERNAL_ERROR", "FAILED")

    missing = make_job(w, {"task_key": "call", "run_job_task": {"job_id": 999}})
    run = wait_run(w, w.jobs.run_now(missing).run_id)
    assert states(run) == {"call": ("TERMINATED", "FAILED")}
    assert "999" in w.jobs.get_run_output(run.tasks[0].run_id).error


def test_cancelling_a_parent_cancels_the_triggered_run(scripted):
    _, w, _ = scripted
    child = make_job(w, py_task("c", "sleep", "60"), name="child")
    parent = make_job(w, {"task_key": "call", "run_job_task": {"job_id": child}})
    run_id = w.jobs.run_now(parent).run_id
    deadline = time.monotonic() + 10
    while not [r for r in w.jobs.list_runs(job_id=child, active_only=True)] and time.monotonic() < deadline:
        time.sleep(0.05)
    child_run = next(iter(w.jobs.list_runs(job_id=child, active_only=True)))
    wait_task_state(w, child_run.run_id, "c", "RUNNING")
    w.jobs.cancel_run(run_id)
    assert run_state(wait_run(w, run_id)) == ("TERMINATED", "CANCELED")
    assert run_state(wait_run(w, child_run.run_id)) == ("TERMINATED", "CANCELED")


# ---------------------------------------------------------------------------- unsupported tasks

def test_task_types_the_local_workspace_cannot_run_fail_clearly(scripted):
    _, w, runner = scripted
    job_id = make_job(w, {"task_key": "q", "sql_task": {"warehouse_id": "abc", "query": {"query_id": "1"}}})
    run = wait_run(w, w.jobs.run_now(job_id).run_id)
    assert states(run) == {"q": ("TERMINATED", "FAILED")}
    q = run.tasks[0]
    assert q.status.termination_details.code == jobs.TerminationCodeCode.INVALID_RUN_CONFIGURATION
    assert "sql_task" in q.state.state_message
    assert "sql_task" in w.jobs.get_run_output(q.run_id).error
    assert run_state(run) == ("INTERNAL_ERROR", "FAILED")
    assert not runner.calls


# ---------------------------------------------------------------------------- listing and deleting

def test_list_runs_filters_and_pages(scripted, ws_api):
    _, w, _ = scripted
    job_a = make_job(w, py_task("t"), max_concurrent_runs=5)
    job_b = make_job(w, py_task("t"))
    done_a = [w.jobs.run_now(job_a).run_id for _ in range(4)]
    for run_id in done_a:
        wait_run(w, run_id)
    done_b = wait_run(w, w.jobs.run_now(job_b).run_id).run_id
    slow = make_job(w, py_task("t", "sleep", "60"))
    active = w.jobs.run_now(slow).run_id
    wait_task_state(w, active, "t", "RUNNING")

    listed = list(w.jobs.list_runs(job_id=job_a, limit=3))  # the SDK follows next_page_token
    assert [r.run_id for r in listed] == sorted(done_a, reverse=True)
    assert all(not r.tasks for r in listed)
    expanded = list(w.jobs.list_runs(job_id=job_a, expand_tasks=True))
    assert expanded[0].tasks[0].task_key == "t"
    assert [r.run_id for r in w.jobs.list_runs(active_only=True)] == [active]
    assert active not in [r.run_id for r in w.jobs.list_runs(completed_only=True)]
    assert {r.run_id for r in w.jobs.list_runs()} == set(done_a) | {done_b, active}
    assert [r.run_id for r in w.jobs.list_runs(run_type=jobs.RunType.JOB_RUN, job_id=job_b)] == [done_b]

    page = ws_api("GET", "/api/2.2/jobs/runs/list", params={"job_id": job_a, "limit": 3}).json()
    assert len(page["runs"]) == 3 and page["has_more"] is True and page["next_page_token"]
    last = ws_api("GET", "/api/2.2/jobs/runs/list",
                  params={"job_id": job_a, "limit": 3, "page_token": page["next_page_token"]}).json()
    assert len(last["runs"]) == 1 and last["has_more"] is False
    assert "next_page_token" not in last
    empty = ws_api("GET", "/api/2.2/jobs/runs/list", params={"job_id": 12345}).json()
    assert empty == {"has_more": False}
    w.jobs.cancel_run(active)
    wait_run(w, active)


def test_delete_run(scripted, ws_api):
    _, w, _ = scripted
    job_id = make_job(w, py_task("t", "sleep", "60"))
    run_id = w.jobs.run_now(job_id).run_id
    wait_task_state(w, run_id, "t", "RUNNING")
    resp = ws_api("POST", "/api/2.2/jobs/runs/delete", json={"run_id": run_id})
    assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_STATE"
    w.jobs.cancel_run(run_id)
    run = wait_run(w, run_id)
    w.jobs.delete_run(run_id)
    with pytest.raises(errors.ResourceDoesNotExist):
        w.jobs.get_run(run_id)
    with pytest.raises(errors.ResourceDoesNotExist):
        w.jobs.get_run_output(run.tasks[0].run_id)
    assert list(w.jobs.list_runs(job_id=job_id)) == []


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/api/2.2/jobs/runs/get", {}),
    ("GET", "/api/2.2/jobs/runs/get", {"run_id": "abc"}),
    ("GET", "/api/2.2/jobs/runs/get-output", {}),
    ("GET", "/api/2.2/jobs/runs/list", {"limit": "-1"}),
    ("GET", "/api/2.2/jobs/runs/list", {"page_token": "%%%"}),
    ("GET", "/api/2.2/jobs/runs/list", {"active_only": "maybe"}),
    ("POST", "/api/2.2/jobs/runs/cancel", {}),
    ("POST", "/api/2.2/jobs/runs/cancel", {"run_id": "x1"}),
    ("POST", "/api/2.2/jobs/runs/cancel-all", {"job_id": 77}),
    ("POST", "/api/2.2/jobs/run-now", {"job_id": 1, "job_parameters": ["a"]}),
    ("POST", "/api/2.2/jobs/run-now", {"job_id": 1, "job_parameters": {"a": {"b": 1}}}),
    ("POST", "/api/2.2/jobs/run-now", {"job_id": 1, "only": "a"}),
    ("POST", "/api/2.2/jobs/run-now", {"job_id": 1, "idempotency_token": 5}),
    ("POST", "/api/2.2/jobs/runs/submit", {"tasks": []}),
    ("POST", "/api/2.2/jobs/runs/submit", {"tasks": [{"task_key": "a"}]}),
    ("POST", "/api/2.2/jobs/runs/submit", {"tasks": [py_task("a")], "timeout_seconds": -1}),
    ("POST", "/api/2.2/jobs/runs/delete", {}),
    ("POST", "/api/2.2/jobs/runs/delete", {"run_id": 10 ** 30}),
    ("POST", "/api/2.2/jobs/runs/cancel", {"run_id": 10 ** 30}),
    ("POST", "/api/2.2/jobs/runs/cancel-all", {"job_id": 10 ** 30}),
    ("GET", "/api/2.2/jobs/runs/get", {"run_id": str(10 ** 30)}),
    ("GET", "/api/2.2/jobs/runs/get-output", {"run_id": str(-10 ** 30)}),
    ("GET", "/api/2.2/jobs/runs/list", {"job_id": str(10 ** 30)}),
    ("GET", "/api/2.2/jobs/runs/list", {"start_time_from": str(10 ** 30)}),
    ("GET", "/api/2.2/jobs/runs/list", {"offset": "-5"}),
    ("GET", "/api/2.2/jobs/runs/list", {"run_type": "NOPE"}),
    ("GET", "/api/2.2/jobs/runs/list", {"page_token": "eyJiZWZvcmUiOiAxMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDB9"}),
    ("POST", "/api/2.2/jobs/run-now", {"job_id": 10 ** 30}),
    ("POST", "JOB", {"only": [{}]}),
    ("POST", "JOB", {"queue": {"enabled": "maybe"}}),
    ("POST", "JOB", {"python_params": [{}]}),
    ("POST", "JOB", {"notebook_params": {"a": {"b": 1}}}),
])
def test_bad_run_requests(scripted, ws_api, method, path, body):
    if path == "JOB":  # run-now of an existing job with a bad field
        body = {"job_id": make_job(scripted[1], py_task("a")), **body}
        path = "/api/2.2/jobs/run-now"
    resp = ws_api(method, path, **({"params": body} if method == "GET" else {"json": body}))
    assert resp.status_code == 400, resp.text
    doc = resp.json()
    assert doc["error_code"] in ("INVALID_PARAMETER_VALUE", "MALFORMED_REQUEST")
    assert doc["message"]


def test_many_pollers_see_consistent_documents(scripted):
    """Concurrent runs/get while the run changes: every document parses and states only move forward."""
    _, w, _ = scripted
    job_id = make_job(w, py_task("a", "sleep", "0.3"), py_task("b", "sleep", "0.3", deps=["a"]))
    run_id = w.jobs.run_now(job_id).run_id
    order = ["PENDING", "QUEUED", "BLOCKED", "RUNNING", "TERMINATING", "TERMINATED", "INTERNAL_ERROR"]
    problems = []

    def poll():
        last = 0
        while True:
            run = w.jobs.get_run(run_id)
            state = run.state.life_cycle_state
            if state is None:
                problems.append("unknown state")
                return
            rank = order.index(state.value) if state.value in order else 0
            if rank < last:
                problems.append(f"went back to {state.value}")
            last = rank
            if state.value in ("TERMINATED", "INTERNAL_ERROR"):
                return

    threads = [threading.Thread(target=poll) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not problems


@pytest.fixture
def ws_api(scripted):
    call, close = raw_calls(scripted[0])
    yield call
    close()


def test_cancel_all_queued_runs(scripted):
    _, w, _ = scripted
    job_id = make_job(w, py_task("work", "sleep", "60"), max_concurrent_runs=1, queue=jobs.QueueSettings(enabled=True))
    running = w.jobs.run_now(job_id).run_id
    wait_task_state(w, running, "work", "RUNNING")
    queued = [w.jobs.run_now(job_id).run_id for _ in range(2)]
    w.jobs.cancel_all_runs(all_queued_runs=True)  # only queued runs, workspace-wide
    for run_id in queued:
        assert run_state(wait_run(w, run_id)) == ("TERMINATED", "CANCELED")
    assert w.jobs.get_run(running).state.life_cycle_state == jobs.RunLifeCycleState.RUNNING
    w.jobs.cancel_run(running)
    assert run_state(wait_run(w, running)) == ("TERMINATED", "CANCELED")


def _enum_values(cls):
    return {e.value for e in cls}


def _check_enums(doc: dict, where: str, problems: list) -> None:
    checks = [
        (("state", "life_cycle_state"), jobs.RunLifeCycleState), (("state", "result_state"), jobs.RunResultState),
        (("status", "state"), jobs.RunLifecycleStateV2State),
        (("status", "termination_details", "code"), jobs.TerminationCodeCode),
        (("status", "termination_details", "type"), jobs.TerminationTypeType),
        (("status", "queue_details", "code"), jobs.QueueDetailsCodeCode),
        (("trigger",), jobs.TriggerType), (("run_type",), jobs.RunType), (("format",), jobs.Format),
        (("run_if",), jobs.RunIf),
    ]
    for path, enum in checks:
        value = doc
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None and value not in _enum_values(enum):
            problems.append(f"{where}: {'.'.join(path)} = {value!r} is not a {enum.__name__}")


def test_only_documented_enum_values_are_sent(scripted, ws_api):
    """Every state, code and type in run documents (all outcomes seen here) is a databricks-sdk enum value."""
    _, w, _ = scripted
    seen: dict[int, list] = {}

    def record(run_id):
        seen.setdefault(run_id, []).append(ws_api("GET", "/api/2.2/jobs/runs/get", params={"run_id": run_id}).json())

    job = make_job(w, py_task("a"), py_task("b", "fail", "x", deps=["a"]), py_task("c", deps=["b"]),
                   py_task("d", deps=["b"], run_if="AT_LEAST_ONE_FAILED"), py_task("e", deps=["a"], run_if="ALL_FAILED"),
                   py_task("f", "flaky", "1", max_retries=1, min_retry_interval_millis=200),
                   {"task_key": "g", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "2"}},
                   py_task("h", deps=[{"task_key": "g", "outcome": "true"}]),
                   py_task("t", "sleep", "5", timeout_seconds=1))
    slow = make_job(w, py_task("s", "sleep", "60"), max_concurrent_runs=1)
    queued = make_job(w, py_task("q", "sleep", "0.3"), max_concurrent_runs=1, queue=jobs.QueueSettings(enabled=True))
    ids = [w.jobs.run_now(job).run_id, w.jobs.run_now(slow).run_id, w.jobs.run_now(slow).run_id,
           w.jobs.run_now(queued).run_id, w.jobs.run_now(queued).run_id,
           w.jobs.submit(run_name="to", timeout_seconds=1,
                         tasks=[jobs.SubmitTask.from_dict(py_task("x", "sleep", "30"))]).run_id]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for run_id in ids:
            record(run_id)
        if seen[ids[1]][-1]["state"]["life_cycle_state"] == "RUNNING":
            w.jobs.cancel_run(ids[1])
        if all(seen[r][-1]["state"]["life_cycle_state"] in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR") for r in ids):
            break
        time.sleep(0.05)
    problems: list[str] = []
    states_seen = set()
    for run_id, docs in seen.items():
        for doc in docs:
            _check_enums(doc, f"run {run_id}", problems)
            states_seen.add(doc["state"]["life_cycle_state"])
            for task in doc.get("tasks", []):
                _check_enums(task, f"run {run_id} task {task['task_key']}", problems)
                states_seen.add(task["state"]["life_cycle_state"])
                out = ws_api("GET", "/api/2.2/jobs/runs/get-output", params={"run_id": task["run_id"]}).json()
                _check_enums(out["metadata"], f"output of {task['run_id']}", problems)
    assert not problems, problems
    assert {"QUEUED", "RUNNING", "TERMINATED", "SKIPPED", "INTERNAL_ERROR"} <= states_seen


def test_stop_waits_for_a_run_that_is_starting_the_queued_ones(tmp_path):
    """A run that has ended and is starting its job's queued runs as the workspace stops: stop waits
    for it, so the store closes only after (the run's thread never reads a closed store)."""
    from stackci.workspace import LocalWorkspace

    from workspace_support import ScriptedRunner, client_for

    server = LocalWorkspace(tmp_path / "data", task_runner=ScriptedRunner()).start()
    w = client_for(server)
    entered, store_closed, failures = threading.Event(), threading.Event(), []
    close, start_queued = server.store.close, server.jobs.start_queued

    def closing() -> None:
        store_closed.set()
        close()

    def slow_start_queued(job_id) -> None:
        entered.set()
        store_closed.wait(1)            # a stop that does not wait for this thread closes the store meanwhile
        try:
            start_queued(job_id)
        except Exception as exc:        # noqa: BLE001 - what the test is about
            failures.append(exc)

    server.store.close, server.jobs.start_queued = closing, slow_start_queued
    run_id = w.jobs.run_now(make_job(w, py_task("t"))).run_id
    assert entered.wait(10)
    server.stop()
    for thread in threading.enumerate():
        if thread.name == f"run-{run_id}":
            thread.join(10)
    assert failures == []
    assert store_closed.is_set()
