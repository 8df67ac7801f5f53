"""``stackci validate``: load, resolve and check a bundle; print what a deploy would use.

Works offline. The current user (``${workspace.current_user.*}``, the ``~`` in
workspace paths, the ``[dev <short_name>]`` prefix) comes from, in order:

1. ``--user`` / ``STACKCI_CURRENT_USER``;
2. the workspace (``GET /api/2.0/preview/scim/v2/Me`` through databricks-sdk), only when
   the target sets ``workspace.host``, ``--offline`` is not given, and the SDK finds
   credentials for it (``DATABRICKS_TOKEN``, OAuth, a profile, ...);
3. otherwise unknown, which is only an error when the configuration needs it
   (a ``~/`` root path, ``mode: development``, a ``${workspace.current_user...}`` reference).
"""

from __future__ import annotations

import json
import os
import weakref
from pathlib import Path

import click

from .. import log
from ..context import App
from ..errors import ConfigError
from . import Bundle, CurrentUser, load_bundle
from .model import UserUnknown
from .options import Line

logger = log.get("validate")


#: the bundle warnings each platform (one per command, one per rehearsal stage) has shown
_SHOWN: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def show_warnings(app: App, bundle: Bundle) -> None:
    """The bundle's warnings as annotations, each once however often the command loads the bundle
    (``plan`` of several targets, an integration test's copy of its target, ...)."""
    try:
        seen = _SHOWN.setdefault(app.platform, set())
    except TypeError:            # a platform without weak references: no memory
        seen = set()
    for warning in bundle.warnings:
        key = (warning.message, warning.file, warning.line)
        if key in seen:
            continue
        seen.add(key)
        app.platform.warning(warning.message, file=display_path(warning.file, app), line=warning.line,
                             title="stackci: bundle")


def display_path(path: str | None, app: App) -> str | None:
    """A path as the CI platform wants it for annotations: relative to the checkout when inside it."""
    if not path:
        return path
    base = app.environ.get("GITHUB_WORKSPACE") or app.environ.get("BUILD_SOURCESDIRECTORY") or os.getcwd()
    try:
        return Path(path).resolve().relative_to(Path(base).resolve()).as_posix()
    except (ValueError, OSError):
        return path


#: environment variables through which databricks-sdk finds credentials without a config file
AUTH_ENV = ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_AUTH_TYPE", "DATABRICKS_CONFIG_PROFILE",
            "DATABRICKS_USERNAME", "ARM_CLIENT_ID", "DATABRICKS_AZURE_RESOURCE_ID", "GOOGLE_CREDENTIALS")


def has_credentials(environ) -> bool:
    """Whether databricks-sdk has something to authenticate with (env vars or ~/.databrickscfg)."""
    if any(environ.get(k) for k in AUTH_ENV):
        return True
    cfg = environ.get("DATABRICKS_CONFIG_FILE") or os.path.join(environ.get("HOME") or os.path.expanduser("~"),
                                                                 ".databrickscfg")
    return os.path.isfile(cfg)


def workspace_user(environ, timeout: int = 10):
    """A ``current_user`` source for :func:`load_bundle` that asks the target's workspace."""
    def fetch(host: str | None) -> CurrentUser:
        if not host:
            raise UserUnknown("the current user is not known and the target sets no workspace.host to ask",
                              hint="pass --user (STACKCI_CURRENT_USER), e.g. --user you@example.com")
        if not has_credentials(environ):
            raise UserUnknown(f"the current user is not known: --user is not given and there are no Databricks "
                              f"credentials to ask {host}",
                              hint="pass --user (STACKCI_CURRENT_USER), e.g. --user you@example.com, or set "
                                   "DATABRICKS_TOKEN / OAuth credentials for the workspace")
        import logging
        sdk_logger = logging.getLogger("databricks.sdk")
        level = sdk_logger.level
        sdk_logger.setLevel(logging.CRITICAL)
        try:
            return _ask(host, timeout)
        finally:
            sdk_logger.setLevel(level)
    return fetch


def _ask(host: str, timeout: int) -> CurrentUser:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config
    from databricks.sdk.errors import DatabricksError
    try:
        cfg = Config(host=host, retry_timeout_seconds=timeout, http_timeout_seconds=timeout)
        me = WorkspaceClient(config=cfg).current_user.me()
    except DatabricksError as exc:
        raise UserUnknown(f"the workspace {host} refused to say who the current user is "
                          f"({exc.error_code or type(exc).__name__})",
                          hint="check the credentials, or pass --user (STACKCI_CURRENT_USER)") from None
    except Exception as exc:  # no credentials, unreachable host, TLS problems, ...
        reason = " ".join(str(exc).split())
        reason = reason if len(reason) <= 300 else reason[:300] + "…"
        raise UserUnknown(f"cannot ask {host} for the current user: {reason}",
                          hint="pass --user (STACKCI_CURRENT_USER) to validate offline, or configure "
                               "credentials (DATABRICKS_TOKEN, OAuth) for the workspace") from None
    if not me.user_name:
        raise UserUnknown(f"the workspace {host} returned no userName for the current user",
                          hint="pass --user (STACKCI_CURRENT_USER)")
    extra = {k: v for k, v in (("id", me.id), ("active", me.active)) if v is not None}
    return CurrentUser(me.user_name, me.display_name, extra, source="workspace")


def _host_line(bundle: Bundle, host: str | None) -> str:
    """The workspace a deploy would use: ``--host`` when given (saying what the target names)."""
    if host and host != bundle.host:
        return f"{host} (--host; the target's workspace.host is {bundle.host or '(not set)'})"
    return bundle.host or "(not set)"


def summary_text(bundle: Bundle, sync_count: int, host: str | None = None) -> str:
    user = bundle.current_user
    lines = [f"Bundle {bundle.name}, target {bundle.target}" + (f" (mode: {bundle.mode})" if bundle.mode else ""),
             f"  host:        {_host_line(bundle, host)}",
             f"  user:        {user.user_name or '(unknown)'}" + (f" (from {user.source})" if user.user_name else ""),
             f"  root path:   {bundle.root_path}",
             f"  file path:   {bundle.file_path}",
             f"  state path:  {bundle.state_path}",
             f"  lock:        {'on' if bundle.lock_enabled else 'off'}",
             f"Resources ({sum(len(v) for v in bundle.resources.values())}):"]
    rows = [(f"{r.kind}.{r.key}", r.full_name or "") for r in bundle.all_resources()]
    width = max((len(a) for a, _ in rows), default=0)
    lines += [f"  {a.ljust(width)}  {b}" for a, b in rows] or ["  (none)"]
    lines.append(f"Files to sync: {sync_count}")
    if bundle.deferred:
        lines.append(f"References resolved at deploy time: {len(bundle.deferred)}")
        lines += [f"  {d.where}: {d.text}" for d in bundle.deferred]
    lines.append("Validation OK" + (f", {len(bundle.warnings)} warning(s)" if bundle.warnings else ""))
    return "\n".join(lines)


def summary_markdown(bundle: Bundle, host: str | None = None) -> str:
    from .. import markdown as md
    rows = [[md.code(f"{r.kind}.{r.key}"), md.cell(r.full_name or "")] for r in bundle.all_resources()]
    shown = md.code(host or bundle.host or "(not set)")
    if host and host != bundle.host:
        shown += f" (--host; the target's workspace.host is {md.code(bundle.host or '(not set)')})"
    parts = [f"### ✅ Bundle {md.code(bundle.name)} valid for target {md.code(bundle.target)}", "",
             f"Host {shown} · root path {md.code(bundle.root_path)}", ""]
    if rows:
        parts.append(md.table(["Resource", "Name"], rows, ["---", "---"]))
    if bundle.warnings:
        parts += ["", f"{len(bundle.warnings)} warning(s); see the annotations."]
    return "\n".join(parts) + "\n"


@click.command("validate")
@click.option("-t", "--target", envvar="STACKCI_TARGET",
              help="Target to validate [default: the only target, else the one with 'default: true'].")
@click.option("--var", "variables", multiple=True, type=Line(), envvar="STACKCI_VAR", metavar="NAME=VALUE",
              help="Set a bundle variable (highest precedence); repeatable. In the environment: one name=value "
                   "per line (values may contain spaces).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              envvar="STACKCI_OUTPUT", help="text: a summary on stderr; json: the resolved bundle on stdout.")
@click.option("-p", "--project", type=click.Path(path_type=Path), default=".", show_default=True,
              envvar="STACKCI_PROJECT", help="Folder of the bundle (holding databricks.yml).")
@click.option("--user", "--current-user", "user", envvar="STACKCI_CURRENT_USER", metavar="USERNAME",
              help="The deploying user's userName (e.g. you@example.com or a service principal's application "
                   "id); otherwise asked from the target's workspace when credentials are configured.")
@click.option("--offline", is_flag=True, envvar="STACKCI_OFFLINE",
              help="Never contact the workspace (the current user must then come from --user if needed).")
@click.option("--host", "host_option", envvar="STACKCI_HOST",
              help="Workspace to ask for the current user [default: the target's workspace.host], as for "
                   "plan and deploy.")
@click.option("--engine", type=click.Choice(["stackci", "cli"]), default="stackci", show_default=True,
              envvar="STACKCI_ENGINE",
              help="stackci: check that stackci's engine can deploy the bundle. cli: run the official "
                   "'databricks bundle validate' instead (Databricks CLI 0.218+ on PATH).")
@click.pass_obj
def command(app: App, target: str | None, variables: tuple[str, ...], output: str, project: Path,
            user: str | None, offline: bool, host_option: str | None = None, engine: str = "stackci") -> None:
    """Load, resolve and check the bundle (databricks.yml) for one target.

    Prints the target, host, root path and each resource with its final name. Unknown fields
    are warnings; anything that would make a deploy fail is an error (exit 2) naming the file
    and line; so is a resource type or key that stackci's engine does not deploy (use --engine
    cli for those bundles). Outputs: target host root-path file-path resources warnings.
    """
    if engine == "cli":
        from ..deploy.databricks_cli import Delegate, arguments, check_flags

        check_flags("validate", **{"--offline": offline, "--user": (user or "").strip()})
        out = Delegate(app, "validate", project, host_option).run(
            arguments("validate", target=target, variables=variables, output=output),
            capture_stdout=output == "json", fail_as_config=True)
        if output == "json":
            click.echo(app.platform.neutralise(out))
        return
    from ..dbx import check_host

    host = check_host(host_option, "--host") if host_option and host_option.strip() else None
    if user:
        source: object = CurrentUser(user.strip(), source="option")
    elif offline:
        def source(_host):
            raise UserUnknown("--offline: the workspace is not asked who the current user is",
                              hint="pass --user (STACKCI_CURRENT_USER), e.g. --user you@example.com")
    else:
        source = workspace_user(app.environ)
        if host:
            ask = source
            source = lambda _bundle_host: ask(host)  # noqa: E731  (the workspace a deploy would use)
    try:
        bundle = load_bundle(project, target, variables, env=app.environ, current_user=source)
    except ConfigError as exc:
        exc.file = display_path(exc.file, app)
        raise
    show_warnings(app, bundle)
    from ..deploy import support
    from ..deploy.resources import apply_order, desired_resources
    try:
        support.check(bundle)
        apply_order(desired_resources(bundle))     # a cycle of ${resources...} references
    except ConfigError as exc:
        exc.file = display_path(exc.file, app)
        raise
    files = bundle.sync_files
    p = app.platform
    p.set_output("target", bundle.target)
    p.set_output("host", host or bundle.host or "")
    p.set_output("root-path", bundle.root_path)
    p.set_output("file-path", bundle.file_path)
    p.set_output("resources", sum(len(v) for v in bundle.resources.values()))
    p.set_output("warnings", len(bundle.warnings))
    p.append_summary(summary_markdown(bundle, host))
    if output == "json":
        data = bundle.to_json()
        data["sync"] = {"count": len(files), "files": sorted(files)}
        click.echo(app.platform.neutralise(json.dumps(data, indent=2, sort_keys=False, default=str)))
    else:
        for line in summary_text(bundle, len(files), host).splitlines():
            logger.info("%s", line)
