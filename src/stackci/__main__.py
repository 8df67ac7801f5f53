"""The single boundary where exceptions become messages and exit codes.

0 ok · 1 the work failed · 2 bad input or configuration · 130 interrupted.
Errors are one line (an ``::error``/``##vso[task.logissue]`` annotation in CI);
a traceback is printed only with ``-v`` and only for unexpected errors.
"""

from __future__ import annotations

import signal
import sys

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130
INTERRUPTED = "stopped by SIGINT or SIGTERM (a cancelled CI job or Ctrl-C)"


def _on_sigterm(signum, frame):  # pragma: no cover - exercised through subprocess tests
    raise KeyboardInterrupt


def main(argv: list[str] | None = None, *, app=None) -> int:
    import click

    from .cli import cli
    from .context import App
    from .errors import StackciError

    app = app or App.from_environ()
    platform = app.platform
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (tests)
        previous = None
    code = EXIT_OK
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="stackci",
                          standalone_mode=False, obj=app)
        code = result if isinstance(result, int) else EXIT_OK
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        platform.error(INTERRUPTED, title="stackci: interrupted")
        code = EXIT_INTERRUPTED
    except getattr(click.exceptions, "NoArgsIsHelpError", ()) as exc:  # `stackci` alone: its help (click 8.2+)
        sys.stdout.write(exc.ctx.get_help() + "\n")
        code = EXIT_OK
    except click.ClickException as exc:  # usage errors: bad option values, missing arguments
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx else _command_path(sys.argv[1:] if argv is None else argv)
        message = " ".join(exc.format_message().split())
        platform.error(f"{message} (see '{where} --help')", title="stackci: bad input")
        code = EXIT_CONFIG
    except StackciError as exc:
        platform.error(exc.one_line(), title=exc.title, file=exc.file, line=exc.line)
        code = exc.exit_code
    except KeyboardInterrupt:
        platform.error(INTERRUPTED, title="stackci: interrupted")
        code = EXIT_INTERRUPTED
    except Exception as exc:  # an unexpected error is still one line unless -v
        if app.verbose:
            import traceback
            sys.stderr.write(platform.neutralise(platform.redact(traceback.format_exc())))
        platform.error(f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())}"
                       + ("" if app.verbose else " (run with -v for the traceback)"),
                       title="stackci: internal error")
        code = EXIT_FAILED
    finally:
        try:
            platform.flush()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return code


def _command_path(argv) -> str:
    """``stackci <command> [<subcommand>]`` named by ``argv``, for errors click raised without a context."""
    from .commands import COMMANDS

    words = [a for a in argv if not a.startswith("-")]
    path = ["stackci"]
    if words and words[0] in COMMANDS:
        path.append(words[0])
        if words[0] == "workspace" and len(words) > 1 and words[1] == "serve":
            path.append("serve")
    return " ".join(path)


def _fast_path(argv: list[str]) -> bool:
    """Answer ``--help`` and ``--version`` without importing click (see commands.py)."""
    if list(argv) in (["--help"], ["-h"]):
        from .commands import root_help

        sys.stdout.write(root_help())
        return True
    if list(argv) == ["--version"]:
        from . import __version__

        sys.stdout.write(f"stackci {__version__}\n")
        return True
    return False


def run() -> None:
    if _fast_path(sys.argv[1:]):
        sys.stdout.flush()
        sys.exit(EXIT_OK)
    code = main()
    # The interpreter's teardown runs the cyclic collector over every object still alive, several
    # times: with databricks-sdk loaded (~100k objects) that alone costs 0.2-0.4 s after the work is
    # done. Frozen objects are still freed by reference count as the modules are cleared (atexit
    # handlers run as before); only what is kept alive by reference cycles is left to the OS.
    import gc
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
