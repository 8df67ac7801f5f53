"""``stackci workspace``: run the local workspace server."""

from __future__ import annotations

import json
import logging
import os
import signal
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
              help="Address to listen on (loopback only unless --allow-remote-bind).  [env: STACKCI_WORKSPACE_HOST]")
@click.option("--port", default=0, type=int, show_default=True, envvar=_env("PORT"),
              help="Port; 0 picks a free one.  [env: STACKCI_WORKSPACE_PORT]")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar=_env("DATA_DIR"),
              help="Keep state here across restarts (default: a temporary directory).  "
                   "[env: STACKCI_WORKSPACE_DATA_DIR]")
@click.option("--token", envvar=_env("TOKEN"),
              help="Bearer token clients must send (default: generated).  [env: STACKCI_WORKSPACE_TOKEN]")
@click.option("--ready-file", type=click.Path(dir_okay=False, path_type=Path), envvar=_env("READY_FILE"),
              help="Write {url, token, pid} as JSON here once listening.  [env: STACKCI_WORKSPACE_READY_FILE]")
@click.option("--allow-remote-bind", is_flag=True, envvar=_env("ALLOW_REMOTE_BIND"),
              help="Allow a non-loopback --host.  [env: STACKCI_WORKSPACE_ALLOW_REMOTE_BIND]")
@click.option("--client-id", envvar=_env("CLIENT_ID"),
              help="Service principal id for OAuth M2M and token federation.  [env: STACKCI_WORKSPACE_CLIENT_ID]")
@click.option("--client-secret", envvar=_env("CLIENT_SECRET"),
              help="Its OAuth secret (M2M).  [env: STACKCI_WORKSPACE_CLIENT_SECRET]")
@click.option("--oidc-issuer", "oidc_issuers", multiple=True, envvar=_env("OIDC_ISSUERS"),
              help="Accept identity tokens from this issuer in the token exchange; repeatable "
                   "(env: space-separated).  [env: STACKCI_WORKSPACE_OIDC_ISSUERS]")
@click.option("--oidc-audience", "oidc_audiences", multiple=True, envvar=_env("OIDC_AUDIENCES"),
              help="Accepted audience of those tokens (default: the token endpoint URL); repeatable.  "
                   "[env: STACKCI_WORKSPACE_OIDC_AUDIENCES]")
@click.option("--fault-rate", type=float, default=0.0, envvar=_env("FAULT_RATE"),
              help="Fraction (0..1) of matching requests that fail.  [env: STACKCI_WORKSPACE_FAULT_RATE]")
@click.option("--fault-kinds", default="429,503", show_default=True, envvar=_env("FAULT_KINDS"),
              help="Comma-separated: 429, 503, drop, latency.  [env: STACKCI_WORKSPACE_FAULT_KINDS]")
@click.option("--fault-path", default=r"^/api/", show_default=True, envvar=_env("FAULT_PATH"),
              help="Regex of request paths faults apply to.  [env: STACKCI_WORKSPACE_FAULT_PATH]")
@click.option("--fault-seed", type=int, envvar=_env("FAULT_SEED"),
              help="Seed for reproducible faults.  [env: STACKCI_WORKSPACE_FAULT_SEED]")
@click.option("--fault-retry-after", type=int, default=0, show_default=True, envvar=_env("FAULT_RETRY_AFTER"),
              help="Retry-After seconds on injected 429/503.  [env: STACKCI_WORKSPACE_FAULT_RETRY_AFTER]")
@click.option("--fault-latency-ms", type=int, default=200, show_default=True, envvar=_env("FAULT_LATENCY_MS"),
              help="Added latency of the 'latency' fault.  [env: STACKCI_WORKSPACE_FAULT_LATENCY_MS]")
def serve(host: str, port: int, data_dir: Path | None, token: str | None, ready_file: Path | None,
          allow_remote_bind: bool, client_id: str | None, client_secret: str | None,
          oidc_issuers: tuple[str, ...], oidc_audiences: tuple[str, ...], fault_rate: float, fault_kinds: str,
          fault_path: str, fault_seed: int | None, fault_retry_after: int, fault_latency_ms: int) -> None:
    """Serve a local Databricks-compatible workspace until SIGINT or SIGTERM.

    Prints the URL and the token; with --ready-file, also writes them (and the pid)
    as JSON once the server accepts requests.
    """
    from stackci.workspace.faults import FaultPlan
    from stackci.workspace.server import LocalWorkspace

    issuers = [i for value in oidc_issuers for i in value.split()]
    audiences = [a for value in oidc_audiences for a in value.split()]
    plan = FaultPlan(rate=fault_rate, kinds=[k for k in fault_kinds.split(",") if k.strip()],
                     path_regex=fault_path, seed=fault_seed, retry_after=fault_retry_after,
                     latency_ms=fault_latency_ms)
    plan.validate()
    ws = LocalWorkspace(data_dir, token, host=host, port=port, force=allow_remote_bind, client_id=client_id,
                        client_secret=client_secret, oidc_issuers=issuers, oidc_audiences=audiences, faults=plan)
    stop = threading.Event()
    previous = {}

    def on_signal(signum, frame):
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread
            pass
    try:
        ws.start()
        try:
            click.echo(f"url={ws.url}")
            click.echo(f"token={ws.token}")
            if ready_file is not None:
                _write_ready(ready_file, {"url": ws.url, "token": ws.token, "pid": os.getpid(),
                                          "workspace_id": ws.workspace_id})
            log.info("local workspace at %s; stop with Ctrl-C", ws.url)
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
            log.info("stopping the local workspace")
        finally:
            ws.stop()
            if ready_file is not None:
                try:
                    ready_file.unlink()
                except OSError:
                    pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _write_ready(path: Path, doc: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    except OSError as exc:
        raise ConfigError(f"cannot write the ready file {path}: {exc.strerror or exc}") from None
