"""The ``stackci`` click group. One subcommand per block, each in its own module,
imported only when that subcommand runs (``stackci --help`` stays fast)."""

from __future__ import annotations

import importlib

import click

from . import __version__
from .commands import COMMANDS, MAX_CONTENT_WIDTH, ROOT_HELP, VERBOSE_HELP, available

def _show_envvars(command: click.Command) -> click.Command:
    """Every option's ``--help`` line names its environment variable (``[env: STACKCI_TARGET]``):
    that variable is how the actions and templates pass the option."""
    for param in command.params:
        if isinstance(param, click.Option) and param.envvar:
            param.show_envvar = True
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _show_envvars(sub)
    return command


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(available()))

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
        return _show_envvars(getattr(module, attr))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx) if name in COMMANDS]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, help=ROOT_HELP, context_settings={"help_option_names": ["-h", "--help"],
                                               "max_content_width": MAX_CONTENT_WIDTH})
@click.version_option(__version__, "--version", prog_name="stackci", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, envvar="STACKCI_VERBOSE",
              help=VERBOSE_HELP)
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    # the help text is commands.ROOT_HELP, shared with the click-free fast path
    from . import log
    from .context import App

    app = ctx.obj if isinstance(ctx.obj, App) else None
    if app is None:
        app = App.from_environ()
        ctx.obj = app
    app.verbose = app.verbose or verbose
    log.setup(app.platform, app.verbose)
