"""examples/github/workflows/ci.yml under act: the unit-tests block as users run it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from e2e_support import ROOT

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "examples" / "project"
WORKFLOW = ROOT / "examples" / "github" / "workflows" / "ci.yml"


def test_passing_project(run_workflow, act_env):
    run = run_workflow(EXAMPLE, WORKFLOW, job="unit-tests")   # the later jobs: test_integration_blocks.py
    assert run.code == 0 and run.job_succeeded, run.log[-3000:]
    outputs = run.step_outputs()
    assert int(outputs["passed"]) >= 10 and outputs["failed"] == "0" and outputs["errors"] == "0"
    assert outputs["junit-xml"].endswith("unit-tests.xml")
    assert run.annotations() == []
    assert "### ✅ Unit tests passed" in run.log
    assert f"passed={outputs['passed']} failed=0" in run.log     # the later step read the outputs
    assert "reusing stackci" in run.log
    # the user's interpreter got the project's requirements, and nothing of stackci's
    py = act_env["python_bin"] / "python"
    assert subprocess.run([str(py), "-c", "import pytest"]).returncode == 0
    assert subprocess.run([str(py), "-c", "import stackci"], capture_output=True).returncode != 0
    path_dirs = list(Path(act_env["toolkit"]).glob("*/path"))
    assert path_dirs and all(sorted(p.name for p in d.iterdir()) == ["stackci"] for d in path_dirs)


def test_failing_project(run_workflow):
    broken = (EXAMPLE / "tests" / "test_churn_pipeline.py").read_text() + (
        "\n\ndef test_deliberately_broken():\n"
        "    total = 1 + 1\n"
        "    assert total == 3, 'arithmetic is broken'\n")
    run = run_workflow(EXAMPLE, WORKFLOW, files={"tests/test_churn_pipeline.py": broken}, job="unit-tests")
    assert run.code != 0 and "🏁  Job failed" in run.log
    outputs = run.step_outputs()
    assert outputs["failed"] == "1"
    errors = run.annotations()
    per_test = [e for e in errors if e.properties.get("file")]
    assert len(per_test) == 1
    line = len(broken.splitlines())
    assert per_test[0].properties == {"file": "tests/test_churn_pipeline.py", "line": str(line),
                                      "title": "tests/test_churn_pipeline.py::test_deliberately_broken failed"}
    assert "arithmetic is broken" in per_test[0].data
    assert any(e.data.startswith("unit tests failed: 1 failed") for e in errors)
    assert "### ❌ Unit tests failed" in run.log and "#### Failures (1)" in run.log
    assert "passed=" in run.log and "failed=1" in run.log     # the if: always() step still ran


INJECTION = """\
name: injection
on: workflow_dispatch
permissions: {}
jobs:
  evil:
    runs-on: ubuntu-latest
    steps:
      - id: one
        continue-on-error: true
        uses: OWNER/stackci/actions/unit-tests@v1
        with:
          pytest-args: ${{ github.event.inputs.quote }}
          slowest: ${{ github.event.inputs.subshell }}
      - id: two
        continue-on-error: true
        uses: OWNER/stackci/actions/unit-tests@v1
        with:
          requirements: ${{ github.event.inputs.subshell }}
          junit-xml: ${{ github.event.inputs.newline }}
      - id: three
        continue-on-error: true
        uses: OWNER/stackci/actions/unit-tests@v1
        with:
          project-dir: ${{ github.event.inputs.newline }}
          python: ${{ github.event.inputs.backtick }}
"""


def test_inputs_cannot_inject_commands_or_outputs(run_workflow, tmp_path):
    marker = tmp_path / "pwned"
    inputs = {"quote": f'"; touch {marker}-1 #',
              "subshell": f"$(touch {marker}-2)",
              "newline": "report.xml\nx=1\n::error::injected",
              "backtick": f"`touch {marker}-3`"}
    run = run_workflow(EXAMPLE, INJECTION, event="workflow_dispatch", payload={"inputs": inputs})
    assert "Main OWNER/stackci/actions/unit-tests@v1" in run.log
    assert list(tmp_path.glob("pwned*")) == []
    assert "x" not in run.step_outputs()
    assert not [e for e in run.annotations() if e.data == "injected"]
    # each step failed with a one-line bad-input error instead of running the text
    messages = [e.data for e in run.annotations()]
    assert any("cannot read requirements file '$(touch" in m for m in messages), messages
    assert any("is not on PATH" in m or "does not exist" in m for m in messages), messages
