"""A small stand-in for an Azure Pipelines agent, enough to run stackci's step templates.

There is no offline Azure agent, so this follows the documented rules for the parts
the templates use, and refuses anything else (a test then fails instead of passing
on something it did not understand):

- template expressions at compile time: ``${{ parameters.x }}`` inside strings and
  ``${{ if eq(parameters.x, true) }}:`` / ``ne(...)`` / ``${{ if parameters.x }}:``
  keys that splice a list of steps, or keys into a mapping (a step's ``env:``); ``template:`` references, relative to the including
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
_EACH = re.compile(r"^each\s+(\w+)\s+in\s+parameters\.(\w+)$")
_MACRO = re.compile(r"\$\(([A-Za-z0-9_.]+)\)")


class Unsupported(AssertionError):
    pass


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][\w.]*)"
                    r"|(?P<punct>[(),\[\]]))")
_FULL = re.compile(r"^\$\{\{\s*(.*?)\s*\}\}$", re.S)
_PART = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


class Expression:
    """Compile-time template expressions: literals, ``parameters.x``, ``variables['X']`` and
    eq ne and or not startsWith endsWith contains format in replace. Anything else is Unsupported."""

    def __init__(self, text: str, scope: dict) -> None:
        self.tokens = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                if text[pos:].strip():
                    raise Unsupported(f"expression {text!r}")
                break
            kind = m.lastgroup
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.scope = scope
        self.i = 0

    def value(self):
        result = self._expr()
        if self.i != len(self.tokens):
            raise Unsupported(f"trailing tokens in {self.tokens}")
        return result

    def _next(self):
        token = self.tokens[self.i]
        self.i += 1
        return token

    def _peek(self, text):
        return self.i < len(self.tokens) and self.tokens[self.i][1] == text

    def _expr(self):
        kind, text = self._next()
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind != "name":
            raise Unsupported(f"unexpected {text!r}")
        if text in ("true", "false"):
            return text == "true"
        if self._peek("("):
            self._next()
            args = []
            while not self._peek(")"):
                args.append(self._expr())
                if self._peek(","):
                    self._next()
            self._next()
            return self._call(text, args)
        root, _, rest = text.partition(".")
        if root == "variables":
            if self._peek("["):
                self._next()
                name = self._expr()
                self._next()
            else:
                name = rest
            return self.scope["variables"].get(name, "")
        if root == "parameters":
            value = self.scope["parameters"]
            for part in rest.split("."):
                if part not in value:
                    raise Unsupported(f"unknown parameter {text}")
                value = value[part]
            return value
        if root in self.scope and rest:   # a loop variable of ${{ each pair in ... }}: pair.key, pair.value
            return self.scope[root][rest]
        raise Unsupported(f"unknown name {text}")

    @staticmethod
    def _str(value) -> str:
        return ("True" if value else "False") if isinstance(value, bool) else str(value)

    def _call(self, name, args):
        low = [self._str(a).lower() for a in args]
        functions = {
            "eq": lambda: low[0] == low[1], "ne": lambda: low[0] != low[1],
            "and": lambda: all(bool(a) for a in args), "or": lambda: any(bool(a) for a in args),
            "not": lambda: not args[0], "startsWith": lambda: low[0].startswith(low[1]),
            "endsWith": lambda: low[0].endswith(low[1]), "contains": lambda: low[1] in low[0],
            "in": lambda: low[0] in low[1:],
            "replace": lambda: self._str(args[0]).replace(self._str(args[1]), self._str(args[2])),
            "format": lambda: re.sub(r"\{(\d+)\}", lambda m: self._str(args[int(m.group(1)) + 1]), args[0]),
        }
        if name not in functions:
            raise Unsupported(f"function {name}")
        return functions[name]()


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

    def _sub(self, value, params, loop: dict | None = None):
        loop = loop or {}
        if isinstance(value, str):
            def one(m):
                expr = m.group(1)
                root, _, rest = expr.partition(".")
                if root in loop and rest in loop[root]:
                    return _render(loop[root][rest])
                if not expr.startswith("parameters.") or expr[11:] not in params:
                    raise Unsupported(f"template expression ${{{{ {expr} }}}}")
                return _render(params[expr[11:]])
            return _EXPR.sub(one, value)
        if isinstance(value, list):
            return [self._sub(v, params, loop) for v in value]
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                m = _EXPR.fullmatch(k) if isinstance(k, str) else None
                each = _EACH.match(m.group(1)) if m else None
                if m and m.group(1).startswith("if "):   # ${{ if ... }}: keys spliced into a mapping
                    if self._condition(k, params, loop):
                        self._merge(out, self._sub(v, params, loop))
                    continue
                if each:   # ${{ each pair in parameters.x }}: over a mapping, in a mapping
                    var, source = each.groups()
                    for key, val in (params[source] or {}).items():
                        self._merge(out, self._sub(v, params, {**loop, var: {"key": key, "value": val}}))
                    continue
                self._merge(out, {self._sub(k, params, loop): self._sub(v, params, loop)})
            return out
        return value

    @staticmethod
    def _merge(out: dict, more: dict) -> None:
        """A key given twice in one mapping (e.g. by an each and a literal) does not compile."""
        twice = set(out) & set(more)
        if twice:
            raise Unsupported(f"mapping keys given twice: {sorted(twice)}")
        out.update(more)

    def _condition(self, key: str, params, loop: dict | None = None) -> bool:
        expr = _EXPR.fullmatch(key).group(1)
        if not expr.startswith("if "):
            raise Unsupported(f"conditional {key}")
        return bool(Expression(expr[3:], {"parameters": params, "variables": self.variables, **(loop or {})}).value())

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
