"""The shipped YAML (actions, Azure templates, example workflows) against the tools
and the house rules: zizmor finds nothing, every file validates against its schema,
and no expression or macro is ever expanded inside a script body. And the Python: ruff
finds no errors."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

ACTIONS = sorted([ROOT / "action.yml", *ROOT.glob("actions/*/action.yml")])
WORKFLOWS = sorted(ROOT.glob("examples/github/workflows/*.yml"))
AZURE = sorted(p for p in ROOT.glob("azure-pipelines/**/*.yml"))
AZURE += sorted(ROOT.glob("examples/azure-pipelines/*.yml"))


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    assert found, f"{name} is part of the test extra; install with: pip install '.[test]'"
    return found


def _rel(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def test_there_is_something_to_check():
    assert ROOT / "action.yml" in ACTIONS
    assert ROOT / "actions" / "unit-tests" / "action.yml" in ACTIONS
    assert WORKFLOWS, "examples/github/workflows holds at least one workflow"
    assert ROOT / "azure-pipelines" / "steps" / "unit-tests.yml" in AZURE
    assert ROOT / "examples" / "azure-pipelines" / "ci.yml" in AZURE


def test_zizmor_offline_finds_nothing():
    proc = subprocess.run([_tool("zizmor"), "--offline", "--no-progress", "--config", "zizmor.yml",
                           *_rel(ACTIONS + WORKFLOWS)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings" in proc.stdout + proc.stderr


def test_ruff_finds_no_errors_in_the_python():
    # the rules are pyproject.toml's [tool.ruff.lint]: syntax errors, undefined and unused names, likely bugs
    proc = subprocess.run([_tool("ruff"), "check", "--no-cache", "--output-format", "concise", "."],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("schema, files", [
    ("vendor.github-actions", ACTIONS),
    ("vendor.github-workflows", WORKFLOWS),
])
def test_github_files_match_their_schema(schema, files):
    proc = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", schema, *_rel(files)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_azure_templates_match_the_azure_pipelines_schema():
    # The vendored schema has patterns that are valid Python but not ECMA regexes (a whole
    # pipeline with resources hits one), hence the python regex variant.
    proc = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.azure-pipelines",
                           "--regex-variant", "python", "--data-transform", "azure-pipelines", *_rel(AZURE)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- house rules the tools do not know -------------------------------------------------

GITHUB_EXPR = re.compile(r"\$\{\{")
# Azure: $(macro), ${{ template expression }}, $[ runtime expression ]. Shell command
# substitution "$(cmd ...)" is indistinguishable from a macro, so script bodies use `...`
# never; they read everything from environment variables.
AZURE_EXPANSION = re.compile(r"\$\(|\$\{\{|\$\[")


def _github_steps(doc):
    if isinstance(doc.get("runs"), dict):
        yield from doc["runs"].get("steps") or []
    for job in (doc.get("jobs") or {}).values():
        yield from (job or {}).get("steps") or []


def _azure_steps(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("script", "bash", "pwsh", "powershell") and isinstance(value, str):
                yield key, value, node
            elif key == "inputs" and isinstance(value, dict) and node.get("task", "").startswith(
                    ("Bash@", "PowerShell@", "CmdLine@", "PythonScript@")):
                for field in ("script", "inline", "filePath", "arguments", "scriptSource"):
                    if isinstance(value.get(field), str):
                        yield f"{node['task']}.{field}", value[field], node
            else:
                yield from _azure_steps(value)
    elif isinstance(node, list):
        for item in node:
            yield from _azure_steps(item)


@pytest.mark.parametrize("path", ACTIONS + WORKFLOWS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_expression_inside_github_run_blocks(path):
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    runs = [step["run"] for step in _github_steps(doc) if isinstance(step, dict) and "run" in step]
    assert runs or path.name != "action.yml" or doc["runs"].get("using") != "composite"
    for body in runs:
        assert not GITHUB_EXPR.search(body), f"{path.name}: pass inputs through env:, not inline:\n{body}"


@pytest.mark.parametrize("path", AZURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_macro_or_expression_inside_azure_scripts(path):
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    bodies = list(_azure_steps(doc))
    for key, body, _step in bodies:
        assert not AZURE_EXPANSION.search(body), f"{path.name} {key}: pass values through env:, not inline:\n{body}"


def test_the_rule_checkers_catch_violations():
    """The checks above are not vacuous: a bad step is flagged by the same code."""
    bad_github = yaml.safe_load("runs:\n  using: composite\n  steps:\n"
                                "    - run: echo '${{ inputs.x }}'\n      shell: bash\n")
    assert any(GITHUB_EXPR.search(s["run"]) for s in _github_steps(bad_github))
    bad_azure = yaml.safe_load("steps:\n- bash: echo $(param)\n- task: Bash@3\n  inputs:\n"
                               "    targetType: inline\n    script: echo ${{ parameters.p }}\n")
    found = [AZURE_EXPANSION.search(body) is not None for _k, body, _s in _azure_steps(bad_azure)]
    assert found == [True, True]


@pytest.mark.parametrize("path", ACTIONS + WORKFLOWS, ids=lambda p: str(p.relative_to(ROOT)))
def test_third_party_actions_are_pinned_by_sha(path):
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    uses = [s["uses"] for s in _github_steps(doc) if isinstance(s, dict) and "uses" in s]
    for ref in uses:
        if ref.startswith(("./", "OWNER/stackci/", "OWNER/stackci@")):
            continue
        assert re.search(r"@[0-9a-f]{40}$", ref), f"{path.name}: pin {ref} to a full commit SHA"


# A cancelled job's runner signals only the step's own process (the shell): stackci must be
# that process (exec), or the deploy never hears the cancel and its lock stays held.
STACKCI_CALL = re.compile(r'^\s*(?:\w+="?\$?\w+"?\s+)*(?:exec\s+)?(?:"\$STACKCI_EXE"|stackci)\s+(?!--version)[a-z]', re.M)
EXEC_CALL = re.compile(r'^\s*(?:\w+="?\$?\w+"?\s+)*exec\s+(?:"\$STACKCI_EXE"|stackci)\s')


def _stackci_scripts():
    for path in ACTIONS:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for step in _github_steps(doc):
            if isinstance(step, dict) and isinstance(step.get("run"), str):
                yield path, step["run"]
    for path in AZURE:
        for _key, body, _step in _azure_steps(yaml.safe_load(path.read_text(encoding="utf-8"))):
            yield path, body


def _calls_without_exec(body: str) -> list[str]:
    """Lines that start stackci as a child of the shell (a loop over several targets may,
    when the script stops on the signal after the child: trap 'exit 130' INT TERM)."""
    lines = [line for line in body.splitlines() if STACKCI_CALL.search(line) and not EXEC_CALL.match(line)]
    return [] if lines and "trap 'exit 130' INT TERM" in body and any(EXEC_CALL.match(x) for x in
                                                                         body.splitlines()) else lines


@pytest.mark.parametrize("path", ACTIONS + AZURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_stackci_is_the_steps_own_process(path):
    for where, body in _stackci_scripts():
        if where == path:
            assert not _calls_without_exec(body), f"{path.name}: exec stackci so a cancel reaches it:\n{body}"


def test_the_exec_rule_catches_a_missing_exec():
    assert _calls_without_exec('"$STACKCI_EXE" deploy') == ['"$STACKCI_EXE" deploy']
    assert _calls_without_exec("if [ -z x ]; then exit 2; fi\nstackci deploy\n") == ["stackci deploy"]
    assert _calls_without_exec('exec "$STACKCI_EXE" deploy') == []
    assert _calls_without_exec('STACKCI_TARGET="$1" exec stackci validate') == []
    assert _calls_without_exec('bash "$GITHUB_ACTION_PATH/scripts/install-toolkit.sh"') == []
    assert _calls_without_exec('"$STACKCI_EXE" --version') == []
    assert sum(bool(_calls_without_exec(body)) for _p, body in _stackci_scripts()) == 0
    assert sum(bool(STACKCI_CALL.search(body)) for _p, body in _stackci_scripts()) == 14   # 7 blocks: the action and the template


def _script_not_last(node) -> list[str]:
    """Steps whose script key (bash/script/pwsh/powershell) is not their last key."""
    found = []
    for key, _body, step in _azure_steps(node):
        if key in ("script", "bash", "pwsh", "powershell") and list(step)[-1] != key:
            found.append(f"{key} step {step.get('name') or step.get('displayName') or '?'}")
    return found


@pytest.mark.parametrize("path", AZURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_azure_script_is_the_last_key_of_its_step(path):
    """The script body comes last, after env:, so that no line-based reader (a reviewer's eye, a
    linter, a pre-stop check) takes an env: value holding an expression for part of the script."""
    assert _script_not_last(yaml.safe_load(path.read_text(encoding="utf-8"))) == [], path.name
    assert _script_not_last(yaml.safe_load("steps:\n- bash: echo hi\n  env:\n    X: ${{ parameters.x }}\n")) \
        == ["bash step ?"]
