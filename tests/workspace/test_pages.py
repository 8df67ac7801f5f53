"""The read-only pages behind the links the local workspace hands out: the job URL a deploy
prints (``/jobs/<id>``), the ``run_page_url`` of every run and task run
(``/?o=<ws>#job/<job>/run/<run>``), and ``/``. What a browser gets: states, timings, task keys;
never logs, outputs, messages or parameters; every value escaped; no token on loopback only."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import shutil
import subprocess
import urllib.parse

import pytest
import requests
from databricks.sdk.service import jobs
from databricks.sdk.service.workspace import ImportFormat

from workspace_support import wait_run

SECRET_PARAM = "param-value-s3cr3t"
LOGGED = "printed-by-the-task-0451"
ERROR = "the-error-text-9931"
EVIL = "<script>alert('x')</script> & \"q\""


def get(url: str, **headers) -> requests.Response:
    return requests.get(url, headers=headers, timeout=10, allow_redirects=False)


def script_of(page: str) -> str:
    found = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(found) == 1, page
    return found[0]


def follow_fragment(url: str) -> str:
    """What the page's script does with the fragment, in Python: the path it replaces the page with."""
    parsed = urllib.parse.urlsplit(url)
    m = re.match(r"^#job/(\d+)(?:/run/(\d+))?$", "#" + parsed.fragment)
    assert m, url
    return f"{parsed.scheme}://{parsed.netloc}/jobs/{m[1]}" + (f"/runs/{m[2]}" if m[2] else "")


@pytest.fixture
def finished(ws, w):
    """A job named with markup whose second task fails after printing, with a parameter."""
    w.workspace.mkdirs("/Shared/pages")
    w.workspace.upload("/Shared/pages/ok.py", io.BytesIO(b"import sys\nprint(sys.argv)\n"), format=ImportFormat.AUTO)
    w.workspace.upload("/Shared/pages/bad.py", io.BytesIO(f"print('{LOGGED}')\nraise ValueError('{ERROR}')\n"
                                                          .encode()), format=ImportFormat.AUTO)
    job = w.jobs.create(name=EVIL, parameters=[jobs.JobParameterDefinition(name="key", default=SECRET_PARAM)],
                        tags={"owner": SECRET_PARAM},
                        tasks=[jobs.Task(task_key="prepare", spark_python_task=jobs.SparkPythonTask(
                                   python_file="/Shared/pages/ok.py", parameters=["{{job.parameters.key}}"])),
                               jobs.Task(task_key="check-it", depends_on=[jobs.TaskDependency("prepare")],
                                         spark_python_task=jobs.SparkPythonTask(python_file="/Shared/pages/bad.py"))])
    run = wait_run(w, w.jobs.run_now(job.job_id, job_parameters={"key": SECRET_PARAM}).run_id)
    assert run.state.result_state.value == "FAILED"
    return job, run


def never_shown(text: str) -> None:
    for needle in (SECRET_PARAM, LOGGED, ERROR, "<script>alert", "Task check"):
        assert needle not in text, needle


def test_the_run_link_opens_the_run_page(ws, finished):
    job, run = finished
    landing = get(run.run_page_url)                      # no token: the server listens on loopback
    assert landing.status_code == 200 and landing.headers["Content-Type"].startswith("text/html")
    script = script_of(landing.text)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in landing.headers["Content-Security-Policy"]
    assert "default-src 'none'" in landing.headers["Content-Security-Policy"]
    page = get(follow_fragment(run.run_page_url))
    assert page.status_code == 200
    text = page.text
    assert f"Run {run.run_id}" in text and "TERMINATED · FAILED" in text
    assert "<code>prepare</code>" in text and "<code>check-it</code>" in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;q&quot;" in text
    assert f'href="/jobs/{job.job_id}"' in text
    never_shown(text)
    assert page.headers["X-Content-Type-Options"] == "nosniff" and page.headers["Cache-Control"] == "no-store"


def test_a_task_run_link_opens_its_run_with_the_task_marked(ws, finished):
    _job, run = finished
    task = next(t for t in run.tasks if t.task_key == "check-it")
    page = get(follow_fragment(task.run_page_url))
    assert page.status_code == 200
    assert f"task run {task.run_id}" in page.text
    marked = re.findall(r'<tr class="here">(.*?)</tr>', page.text)
    assert len(marked) == 1 and "check-it" in marked[0] and "FAILED" in marked[0]
    never_shown(page.text)


@pytest.mark.skipif(shutil.which("node") is None, reason="no JavaScript engine to run the page's script")
def test_the_script_turns_the_fragment_into_the_run_page(ws, finished):
    _job, run = finished
    script = script_of(get(run.run_page_url).text)
    fragment = "#" + urllib.parse.urlsplit(run.run_page_url).fragment
    harness = ("var location={hash:%r,replace:function(u){console.log(u)}};" % fragment) + script
    out = subprocess.run(["node", "-e", harness], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == urllib.parse.urlsplit(follow_fragment(run.run_page_url)).path
    quiet = subprocess.run(["node", "-e", "var location={hash:'#job/1/run/2);alert(1)//',replace:function(u)"
                                          "{console.log(u)}};" + script], capture_output=True, text=True, timeout=30)
    assert quiet.stdout == "", "anything but digits is left alone"


def test_the_job_page_and_the_index(ws, finished):
    job, run = finished
    page = get(f"{ws.url}/jobs/{job.job_id}")            # what deploy and rehearse print for a job
    assert page.status_code == 200
    assert f'href="/jobs/{job.job_id}/runs/{run.run_id}"' in page.text
    assert "<code>prepare</code>" in page.text and "Python file" in page.text
    never_shown(page.text)
    index = get(ws.url + "/")
    assert index.status_code == 200 and "<script" not in index.text
    assert f'href="/jobs/{job.job_id}"' in index.text and f'/runs/{run.run_id}"' in index.text
    never_shown(index.text)


def test_unknown_ids_are_html_404s(ws, finished):
    job, run = finished
    for path in (f"/jobs/{job.job_id + 99}", f"/jobs/{job.job_id + 99}/runs/{run.run_id}",
                 f"/jobs/{job.job_id}/runs/{run.run_id + 999}"):
        page = get(ws.url + path)
        assert page.status_code == 404 and page.headers["Content-Type"].startswith("text/html"), path
        assert "does not exist in this local workspace" in page.text


def test_a_link_of_another_workspace_says_so_and_goes_nowhere(ws, finished):
    _job, run = finished
    other = run.run_page_url.replace(f"?o={ws.workspace_id}", "?o=42")
    page = get(other)
    assert page.status_code == 200 and "<script" not in page.text
    assert f"This link is for workspace 42; this local workspace is {ws.workspace_id}." in page.text


def test_pages_are_read_only_and_the_api_still_needs_the_token(ws, finished):
    job, _run = finished
    assert requests.post(f"{ws.url}/jobs/{job.job_id}", timeout=10).status_code == 405
    assert get(f"{ws.url}/api/2.2/jobs/get?job_id={job.job_id}").status_code == 401


def test_a_foreign_host_header_is_refused(ws, finished):
    """A web page that rebinds its own name to 127.0.0.1 sends its name as Host: no page for it."""
    job, _run = finished
    page = get(f"{ws.url}/jobs/{job.job_id}", Host="attacker.example:80")
    assert page.status_code == 403 and EVIL not in page.text and "&lt;script" not in page.text
    assert get(f"{ws.url}/jobs/{job.job_id}", Host=f"localhost:{ws.port}").status_code == 200


def test_off_loopback_the_pages_need_the_token(tmp_path):
    from stackci.workspace import LocalWorkspace

    with LocalWorkspace(tmp_path / "data", host="0.0.0.0", force=True) as remote:
        url = f"http://127.0.0.1:{remote.port}"
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.core import Config

        w = WorkspaceClient(config=Config(host=url, token=remote.token, auth_type="pat", retry_timeout_seconds=10))
        job = w.jobs.create(name="remote", tasks=[jobs.Task(
            task_key="t", spark_python_task=jobs.SparkPythonTask(python_file="/x.py"))])
        assert get(f"{url}/jobs/{job.job_id}").status_code == 401
        assert get(f"{url}/jobs/{job.job_id}", Authorization="Bearer wrong").status_code == 401
        page = get(f"{url}/jobs/{job.job_id}", Authorization=f"Bearer {remote.token}")
        assert page.status_code == 200 and "remote" in page.text
