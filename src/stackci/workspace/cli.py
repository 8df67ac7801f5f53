"""``stackci workspace``: run the local workspace server."""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
import threading
from pathlib import Path

import click

from stackci.errors import ConfigError

log = logging.getLogger(__name__)


def _env(name: str) -> str:
    return f"STACKCI_WORKSPACE_{name}"


@click.group("workspace")
def workspace() -> None:
    """The local workspace: a Databricks-compatible REST server on loopback."""


@workspace.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, envvar=_env("HOST"),
              help="Address to listen on (loopback only unless --allow-remote-bind).")
@click.option("--port", default=0, type=click.IntRange(0, 65535), show_default=True, envvar=_env("PORT"),
              help="Port; 0 picks a free one.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar=_env("DATA_DIR"),
              help="Keep state here across restarts (default: a temporary directory).")
@click.option("--token", envvar=_env("TOKEN"),
              help="Bearer token clients must send (default: generated).")
@click.option("--ready-file", type=click.Path(dir_okay=False, path_type=Path), envvar=_env("READY_FILE"),
              help="Write {url, token, pid, workspace_id, data_dir} as JSON here once listening "
                   "(removed on exit).")
@click.option("--allow-remote-bind", is_flag=True, envvar=_env("ALLOW_REMOTE_BIND"),
              help="Allow a non-loopback --host (its HTML pages then need the token too, like its API).")
@click.option("--client-id", envvar=_env("CLIENT_ID"),
              help="Service principal id for OAuth M2M and token federation.")
@click.option("--client-secret", envvar=_env("CLIENT_SECRET"),
              help="Its OAuth secret (M2M).")
@click.option("--oidc-issuer", "oidc_issuers", multiple=True, envvar=_env("OIDC_ISSUERS"),
              help="Accept identity tokens from this issuer in the token exchange; repeatable "
                   "(env: space-separated).")
@click.option("--oidc-audience", "oidc_audiences", multiple=True, envvar=_env("OIDC_AUDIENCES"),
              help="Accepted audience of those tokens (default: the token endpoint URL); repeatable.")
@click.option("--fault-rate", type=float, default=0.0, envvar=_env("FAULT_RATE"),
              help="Fraction (0..1) of matching requests that fail.")
@click.option("--fault-kinds", default="429,503", show_default=True, envvar=_env("FAULT_KINDS"),
              help="Comma-separated: 429, 503, drop, latency.")
@click.option("--fault-path", default=r"^/api/", show_default=True, envvar=_env("FAULT_PATH"),
              help="Regex of request paths faults apply to.")
@click.option("--fault-seed", type=int, envvar=_env("FAULT_SEED"),
              help="Seed for reproducible faults.")
@click.option("--fault-retry-after", type=int, default=0, show_default=True, envvar=_env("FAULT_RETRY_AFTER"),
              help="Retry-After seconds on injected 429/503.")
@click.option("--fault-latency-ms", type=int, default=200, show_default=True, envvar=_env("FAULT_LATENCY_MS"),
              help="Added latency of the 'latency' fault.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, data_dir: Path | None, token: str | None,
          ready_file: Path | None, allow_remote_bind: bool, client_id: str | None, client_secret: str | None,
          oidc_issuers: tuple[str, ...], oidc_audiences: tuple[str, ...], fault_rate: float, fault_kinds: str,
          fault_path: str, fault_seed: int | None, fault_retry_after: int, fault_latency_ms: int) -> None:
    """Serve a local Databricks-compatible workspace until SIGINT or SIGTERM.

    Prints url=URL and token=TOKEN on stdout; with --ready-file, also writes
    {"url", "token", "pid", "workspace_id", "data_dir"} as JSON there once the server accepts
    requests, and removes it again on shutdown. URL/ in a browser shows its jobs and runs
    (read-only; the job and run links stackci prints open there). Exits 0 after a clean shutdown.
    """
    from stackci.workspace.faults import FaultPlan
    from stackci.workspace.server import LocalWorkspace

    platform = getattr(ctx.obj, "platform", None)
    if platform is not None:  # never show the secrets in CI logs
        platform.mask(token)
        platform.mask(client_secret)
    issuers = [i for value in oidc_issuers for i in value.split()]
    audiences = [a for value in oidc_audiences for a in value.split()]
    plan = FaultPlan(rate=fault_rate, kinds=[k for k in fault_kinds.split(",") if k.strip()],
                     path_regex=fault_path, seed=fault_seed, retry_after=fault_retry_after,
                     latency_ms=fault_latency_ms)
    try:
        plan.validate()
    except ConfigError as exc:
        raise ConfigError(exc.message, hint="see the --fault-* options in 'stackci workspace serve --help'") from None
    ws = LocalWorkspace(data_dir, token, host=host, port=port, force=allow_remote_bind, client_id=client_id,
                        client_secret=client_secret, oidc_issuers=issuers, oidc_audiences=audiences, faults=plan)
    if ready_file is not None:
        _check_ready_file(ready_file)
    stop = threading.Event()
    previous = {}

    def on_signal(signum, frame):
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread
            pass
    wrote_ready = False
    try:
        ws.start()
        try:
            if platform is not None:
                platform.mask(ws.token)
            click.echo(f"url={ws.url}")
            click.echo(f"token={ws.token}")
            if ready_file is not None:
                _write_ready(ready_file, {"url": ws.url, "token": ws.token, "pid": os.getpid(),
                                          "workspace_id": ws.workspace_id, "data_dir": str(ws.data_dir)})
                wrote_ready = True
            log.info("open %s/ in a browser for its jobs and runs; stop it with Ctrl-C or SIGTERM", ws.url)
            while not stop.wait(0.2):
                pass
            log.info("stopping the local workspace")
        finally:
            if wrote_ready:
                try:
                    ready_file.unlink()
                except OSError:
                    pass
            ws.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _check_ready_file(path: Path) -> None:
    """Fail before starting when the ready file cannot be written; remove a stale one."""
    parent = path.parent
    hint = "pass a --ready-file path in an existing, writable directory"
    if path.is_dir():
        raise ConfigError(f"the ready file {path} is a directory", hint=hint)
    if not parent.is_dir():
        raise ConfigError(f"cannot write the ready file {path}: {parent} is not a directory", hint=hint)
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write the ready file {path}: {exc.strerror or exc}", hint=hint) from None
    try:
        path.unlink()  # a stale file from an earlier server must not look ready
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot replace the ready file {path}: {exc.strerror or exc}", hint=hint) from None


def _write_ready(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(doc))
        tmp.replace(path)  # atomic: readers never see a half-written file
    except OSError as exc:
        raise ConfigError(f"cannot write the ready file {path}: {exc.strerror or exc}",
                          hint="pass a --ready-file path in an existing, writable directory") from None
