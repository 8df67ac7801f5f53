"""A small stand-in for an Azure Pipelines agent, enough to run stackci's step templates.

There is no offline Azure agent, so this follows the documented rules for the parts
the templates use, and refuses anything else (a test then fails instead of passing
on something it did not understand):

- template expressions at compile time: ``${{ parameters.x }}`` inside strings and
  ``${{ if eq(parameters.x, true) }}:`` / ``ne(...)`` / ``${{ if parameters.x }}:``
  keys that splice a list of steps; ``template:`` references, relative to the including
  file or ``file@alias`` for a repository resource; ``${{ each pair in parameters.x }}:``
  over an object parameter inside a mapping; typed parameters with defaults,
  unknown parameters rejected;
- macros ``$(Name)`` expanded in ``env:`` values and task inputs (never inside scripts:
  the policy test forbids them there), unknown macros left as they are;
- ``bash:`` steps run with ``bash --noprofile --norc`` in the sources directory, with
  the pipeline variables as environment variables (``A.b`` → ``A_B``; secret variables such
  as ``System.AccessToken`` only where a step maps them in ``env:``) plus the step's
  ``env:``; step conditions ``succeeded()`` (default), ``succeededOrFailed()``,
  ``always()``; a cancel (``cancel_when``, checked while a step runs) sends SIGINT to that
  step's process only, as the agent does, and later steps then run only with ``always()``;
  logging commands ``task.setvariable`` (``isOutput`` → ``step.name``),
  ``task.prependpath``, ``task.logissue``, ``task.uploadsummary``, ``task.setsecret``;
- tasks: ``UsePythonVersion@0`` puts a given interpreter first on PATH,
  ``PublishTestResults@2`` records the files that exist; ``checkout:``
  steps are no-ops (the test lays out the checkouts).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from grammar import parse_azure_log

_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_IF = re.compile(r"^if\s+(?:(eq|ne)\(\s*parameters\.(\w+)\s*,\s*([^)]*?)\s*\)|parameters\.(\w+))$")
_EACH = re.compile(r"^each\s+(\w+)\s+in\s+parameters\.(\w+)$")
_MACRO = re.compile(r"\$\(([A-Za-z0-9_.]+)\)")


class Unsupported(AssertionError):
    pass


def _literal(text: str):
    low = text.strip().strip("'\"").lower()
    if low in ("true", "false"):
        return low == "true"
    return text.strip().strip("'\"")


def _typed(kind: str, value):
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise Unsupported(f"boolean parameter got {value!r}")
    if kind == "number":
        return float(value)
    return value


def _render(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


@dataclass
class Agent:
    build_dir: Path
    repositories: dict[str, Path]           # alias -> checkout folder (for file@alias)
    base_env: dict[str, str]
    python_bin: Path | None = None          # what UsePythonVersion@0 puts on PATH
    variables: dict[str, str] = field(default_factory=dict)
    path: list[str] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)   # (step, output)
    issues: list = field(default_factory=list)
    summaries: list[Path] = field(default_factory=list)
    published: list[Path] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    failed: bool = False
    canceled: bool = False
    #: checked every 20 ms while a bash step runs; when it turns true the run is cancelled
    cancel_when: Callable[[], bool] | None = None
    exit_codes: dict[str, int] = field(default_factory=dict)   # step name -> exit code
    ran: list[str] = field(default_factory=list)                 # steps that ran (name, else task)
    #: variables that, like secret variables on a real agent, never become environment variables
    secret_variables: set[str] = field(default_factory=lambda: {"System.AccessToken"})

    def __post_init__(self):
        self.sources = self.build_dir / "s"
        for name, folder in (("Agent.BuildDirectory", self.build_dir), ("Build.SourcesDirectory", self.sources),
                             ("System.DefaultWorkingDirectory", self.sources),
                             ("Agent.TempDirectory", self.build_dir / "_temp"),
                             ("Agent.ToolsDirectory", self.build_dir / "_tool"),
                             ("Common.TestResultsDirectory", self.build_dir / "TestResults")):
            folder.mkdir(parents=True, exist_ok=True)
            self.variables[name] = str(folder)
        self.variables["TF_BUILD"] = "True"

    # --- compile time -----------------------------------------------------------------
    def expand(self, path: Path, parameters: dict | None = None) -> list[dict]:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if "jobs" in doc:   # a pipeline: its first job's steps
            assert not parameters and not doc.get("parameters"), "pipelines here take no parameters"
            return self._steps(doc["jobs"][0]["steps"], {}, path)
        declared = {p["name"]: p for p in doc.get("parameters") or []}
        given = dict(parameters or {})
        unknown = set(given) - set(declared)
        if unknown:
            raise Unsupported(f"{path.name}: unexpected parameters {sorted(unknown)}")
        values = {}
        for name, spec in declared.items():
            if name not in given and "default" not in spec:
                raise Unsupported(f"{path.name}: parameter {name} is required")
            values[name] = _typed(spec.get("type", "string"), given.get(name, spec.get("default")))
            if spec.get("type") == "object" and not isinstance(values[name], (dict, list)):
                raise Unsupported(f"{path.name}: object parameter {name} got {values[name]!r}")
        return self._steps(doc.get("steps") or [], values, path)

    def _sub(self, value, params):
        if isinstance(value, str):
            def one(m):
                expr = m.group(1)
                if not expr.startswith("parameters.") or expr[11:] not in params:
                    raise Unsupported(f"template expression ${{{{ {expr} }}}}")
                return _render(params[expr[11:]])
            return _EXPR.sub(one, value)
        if isinstance(value, list):
            return [self._sub(v, params) for v in value]
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                m = _EXPR.fullmatch(k) if isinstance(k, str) else None
                each = _EACH.match(m.group(1)) if m else None
                if each:   # ${{ each pair in parameters.x }}: over a mapping, in a mapping
                    var, source = each.groups()
                    for key, val in (params[source] or {}).items():
                        scope = {**params, f"{var}.key": key, f"{var}.value": val}
                        out.update(self._sub_each(v, scope))
                    continue
                out[self._sub(k, params)] = self._sub(v, params)
            return out
        return value

    def _sub_each(self, value, scope):
        def one(m):
            expr = m.group(1)
            if expr in scope:
                return _render(scope[expr])
            raise Unsupported(f"template expression ${{{{ {expr} }}}} inside each")
        return {_EXPR.sub(one, k): _EXPR.sub(one, str(v)) for k, v in value.items()}

    def _condition(self, key: str, params) -> bool:
        m = _IF.match(_EXPR.fullmatch(key).group(1))
        if not m:
            raise Unsupported(f"conditional {key}")
        if m.group(4):
            return bool(params[m.group(4)])
        left, right = params[m.group(2)], _literal(m.group(3))
        if isinstance(left, bool) and isinstance(right, str) and right.startswith("parameters."):
            right = params[right[11:]]
        same = str(left).lower() == str(right).lower()
        return same if m.group(1) == "eq" else not same

    def _steps(self, items, params, where: Path) -> list[dict]:
        out: list[dict] = []
        for item in items:
            if isinstance(item, dict) and len(item) == 1 and _EXPR.fullmatch(next(iter(item))):
                key, body = next(iter(item.items()))
                if self._condition(key, params):
                    out += self._steps(body, params, where)
                continue
            step = self._sub(item, params)
            if "template" in step:
                ref = step["template"]
                if "@" in ref:
                    rel, alias = ref.split("@", 1)
                    target = self.repositories[alias] / rel
                else:
                    target = where.parent / ref
                out += self.expand(target, step.get("parameters"))
                continue
            out.append(step)
        return out

    # --- run time ---------------------------------------------------------------------
    def macro(self, text: str) -> str:
        return _MACRO.sub(lambda m: self.variables.get(m.group(1), m.group(0)), str(text))

    def _env(self, step) -> dict[str, str]:
        env = dict(self.base_env)
        for name, value in self.variables.items():
            if name not in self.secret_variables:
                env[name.replace(".", "_").upper()] = value
        env["TF_BUILD"] = "True"
        if self.path:
            env["PATH"] = os.pathsep.join([*reversed(self.path), env.get("PATH", "")])
        for name, value in (step.get("env") or {}).items():
            env[name] = self.macro(value)
        return env

    def run(self, steps: list[dict]) -> "Agent":
        for index, step in enumerate(steps):
            condition = str(step.get("condition", "succeeded()")).replace(" ", "")
            if condition not in ("succeeded()", "succeededOrFailed()", "always()"):
                raise Unsupported(f"condition {condition}")
            if self.failed and condition == "succeeded()":
                continue
            if self.canceled and condition != "always()":
                continue
            name = step.get("name") or f"step{index}"
            if "checkout" in step:
                continue
            self.ran.append(step.get("name") or step.get("task") or name)
            if "bash" in step:
                self._bash(name, step)
            elif step.get("task") == "UsePythonVersion@0":
                assert self.python_bin, "the test gives UsePythonVersion@0 an interpreter"
                self.path.append(str(self.python_bin))
            elif step.get("task") == "PublishTestResults@2":
                inputs = {k: self.macro(v) for k, v in (step.get("inputs") or {}).items()}
                assert inputs.get("testResultsFormat") == "JUnit"
                files = [Path(p) for p in inputs["testResultsFiles"].split("\n") if p.strip()]
                # the real task only warns when nothing matches
                self.published += [p for p in files if p.is_file()]
            else:
                raise Unsupported(f"step {step}")
        return self

    def _bash(self, name: str, step: dict) -> None:
        proc = subprocess.Popen(["bash", "--noprofile", "--norc", "-c", step["bash"]], cwd=self.sources,
                                env=self._env(step), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if self.cancel_when is not None and not self.canceled:
            deadline = time.monotonic() + 600
            while proc.poll() is None and time.monotonic() < deadline:
                if self.cancel_when():
                    self.canceled = True
                    proc.send_signal(signal.SIGINT)   # the step's process, not its process group
                    break
                time.sleep(0.02)
        stdout, stderr = proc.communicate(timeout=600)
        self.exit_codes[name] = proc.returncode
        output = stdout + stderr
        self.log.append((name, output))
        for cmd in parse_azure_log(output):
            if cmd.name == "task.setvariable":
                var = cmd.properties["variable"]
                output_var = cmd.properties.get("isOutput", "").lower() == "true"
                self.variables[f"{name}.{var}" if output_var else var] = cmd.data
            elif cmd.name == "task.prependpath":
                self.path.append(cmd.data)
            elif cmd.name == "task.logissue":
                self.issues.append(cmd)
            elif cmd.name == "task.uploadsummary":
                self.summaries.append(Path(cmd.data))
            elif cmd.name == "task.setsecret":
                self.secrets.append(cmd.data)
        if proc.returncode != 0:
            self.failed = True

    def output(self, step: str, name: str) -> str | None:
        return self.variables.get(f"{step}.{name}")

    def text(self) -> str:
        return "\n".join(out for _, out in self.log)
