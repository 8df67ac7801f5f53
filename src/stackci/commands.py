"""The command table and the root help, without importing click.

``stackci --help`` and ``stackci --version`` are answered from here: importing click
alone costs several times the interpreter's own start-up, and a CI log or a
shell completion asks for them often. The text is the one the click group in
:mod:`stackci.cli` renders (a unit test compares the two at several widths).
"""

from __future__ import annotations

import os

#: subcommand -> (module:attribute, one-line help). Modules load lazily.
COMMANDS: dict[str, tuple[str, str]] = {
    "unit-tests": ("stackci.unit_tests:command",
                   "Run the project's pytest suite, publish JUnit, annotate failures."),
    "run-job": ("stackci.runs.cli:command",
                "Run a job that exists in a workspace, wait with progress, report task by task."),
    "validate": ("stackci.bundle.cli:command",
                 "Load, resolve and check the bundle (databricks.yml) for a target; print a summary."),
    "cut-release": ("stackci.release.cli:command",
                    "Cut a release: version from the tags, release branch, tag, notes, GitHub Release."),
    "plan": ("stackci.deploy.cli:plan_command",
             "Show what a deploy of a bundle target would create, update, delete and upload."),
    "deploy": ("stackci.deploy.cli:deploy_command",
               "Deploy a bundle target: lock, sync files, apply jobs/experiments/models, record state."),
    "destroy": ("stackci.deploy.cli:destroy_command",
                "Remove every job, experiment, model and file a bundle target's deployment owns."),
    "integration-test": ("stackci.runs.integration:integration_command",
                         "Deploy an isolated copy of a target, run its jobs, report task by task, tear it down."),
    "gc": ("stackci.runs.integration:gc_command",
           "Remove isolated copies that integration tests left behind (for a nightly workflow)."),
    "rehearse": ("stackci.rehearse.cli:command",
                 "Rehearse the whole CI/CD flow of a project against the local workspace: no credentials needed."),
    "workspace": ("stackci.workspace.cli:workspace",
                  "The local workspace: a Databricks-compatible REST server on loopback."),
}

ROOT_HELP = """stackci: CI/CD building blocks for MLOps Stacks projects on Databricks.

Every option can also be given as an environment variable STACKCI_<OPTION>
(e.g. --project is STACKCI_PROJECT), which is how the GitHub actions and Azure
templates pass their inputs.
"""

VERBOSE_HELP = "Debug logging, and tracebacks for unexpected errors.  [env: STACKCI_VERBOSE]"
MAX_CONTENT_WIDTH = 100
ROOT_OPTIONS = [
    ("--version", "Show the version and exit."),
    ("-v, --verbose", VERBOSE_HELP),
    ("-h, --help", "Show this message and exit."),
]


def available() -> list[str]:
    """Commands whose module is installed, sorted (a trimmed install may lack some)."""
    import importlib.util

    names = []
    for name, (target, _) in COMMANDS.items():
        try:
            found = importlib.util.find_spec(target.split(":")[0]) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            names.append(name)
    return sorted(names)


def _terminal_columns() -> int:
    try:
        columns = int(os.environ.get("COLUMNS", ""))
        if columns > 0:
            return columns
    except ValueError:
        pass
    try:
        return os.get_terminal_size(1).columns
    except (OSError, ValueError):
        return 80


def _wrap(text: str, width: int, indent: str = "") -> str:
    """Wrap paragraphs (separated by blank lines), each joined into one line first."""
    import textwrap

    wrapper = textwrap.TextWrapper(width, initial_indent=indent, subsequent_indent=indent,
                                   replace_whitespace=False)
    paragraphs = [" ".join(line.strip() for line in block.splitlines() if line.strip())
                  for block in text.strip().split("\n\n")]
    return "\n\n".join(wrapper.fill(p) for p in paragraphs if p)


def _definitions(rows: list[tuple[str, str]], width: int, indent: int = 2) -> list[str]:
    first_col = min(max(len(first) for first, _ in rows), 30) + 2
    out = []
    for first, second in rows:
        line = " " * indent + first
        if len(first) <= first_col - 2:
            line += " " * (first_col - len(first))
            lead = ""
        else:
            out.append(line)
            line, lead = "", " " * (first_col + indent)
        wrapped = _wrap(second, max(width - first_col - 2, 10)).splitlines()
        out.append(line + lead + wrapped[0])
        out.extend(" " * (first_col + indent) + rest for rest in wrapped[1:])
    return out


def root_help(columns: int | None = None) -> str:
    """The text of ``stackci --help`` for a terminal this many columns wide."""
    width = max(min(columns or _terminal_columns(), MAX_CONTENT_WIDTH) - 2, 50)
    lines = ["Usage: stackci [OPTIONS] COMMAND [ARGS]...", "", _wrap(ROOT_HELP, width, "  "), "",
             "Options:", *_definitions(ROOT_OPTIONS, width)]
    commands = [(name, COMMANDS[name][1]) for name in available()]
    if commands:
        lines += ["", "Commands:", *_definitions(commands, width)]
    return "\n".join(lines) + "\n"
