"""The ``stackci`` click group. One subcommand per block, each in its own module,
imported only when that subcommand runs (``stackci --help`` stays fast)."""

from __future__ import annotations

import importlib
import importlib.util

import click

from . import __version__

#: subcommand -> (module:attribute, one-line help). Modules load lazily.
COMMANDS: dict[str, tuple[str, str]] = {
    "unit-tests": ("stackci.unit_tests:command",
                   "Run the project's pytest suite, publish JUnit, annotate failures."),
    "workspace": ("stackci.workspace.cli:workspace",
                  "The local workspace: a Databricks-compatible REST server on loopback."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._available()))

    @staticmethod
    def _available() -> list[str]:
        names = []
        for name, (target, _) in COMMANDS.items():
            module = target.split(":")[0]
            try:
                found = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError:
                found = False
            if found:
                names.append(name)
        return names

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None or name not in COMMANDS:
            return command
        module_name, attr = COMMANDS[name][0].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return None
            raise
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx) if name in COMMANDS]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"],
                                               "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="stackci", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, envvar="STACKCI_VERBOSE",
              help="Debug logging, and tracebacks for unexpected errors.  [env: STACKCI_VERBOSE]")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """stackci: CI/CD building blocks for MLOps Stacks projects on Databricks.

    Every option can also be given as an environment variable STACKCI_<OPTION>
    (e.g. --project is STACKCI_PROJECT), which is how the GitHub actions and Azure
    templates pass their inputs.
    """
    from . import log
    from .context import App

    app = ctx.obj if isinstance(ctx.obj, App) else None
    if app is None:
        app = App.from_environ()
        ctx.obj = app
    app.verbose = app.verbose or verbose
    log.setup(app.platform, app.verbose)
