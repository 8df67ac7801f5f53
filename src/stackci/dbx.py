"""One place that builds a databricks-sdk client and turns its auth failures into
messages that say how to fix them. Auth is the SDK's: DATABRICKS_HOST plus a token,
OAuth M2M, github-oidc, azure-devops-oidc, azure-cli, a profile, ... stackci never
parses tokens."""

from __future__ import annotations

import re

from .errors import ConfigError

DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*$")


def parse_duration(text: str, option: str = "--timeout") -> float:
    """``90``, ``90s``, ``15m``, ``1h30m`` → seconds; anything else is a ConfigError."""
    m = DURATION.match(text or "")
    if not text or not text.strip() or not m or not any(m.groups()):
        raise ConfigError(f"{option}: {text!r} is not a duration",
                          hint="write seconds or a number with h/m/s, e.g. 90, 45s, 15m, 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ConfigError(f"{option}: the duration must be more than zero", hint="e.g. 30m")
    return total


def workspace_client(host: str | None = None, profile: str | None = None, platform=None):
    """A WorkspaceClient, authenticated now, so a missing credential fails before any work."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    kwargs = {k: v for k, v in (("host", host), ("profile", profile)) if v}
    try:
        config = Config(**kwargs)
        headers = config.authenticate()
    except ValueError as exc:
        first = " ".join(str(exc).split())[:300]
        raise ConfigError(f"cannot authenticate to Databricks: {first}",
                          hint="set DATABRICKS_HOST and DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID/SECRET, "
                               "or run in GitHub Actions with DATABRICKS_AUTH_TYPE=github-oidc") from None
    if platform is not None:
        for secret in (config.token, config.client_secret, headers.get("Authorization", "").partition(" ")[2]):
            if secret:
                platform.mask(secret)
    return WorkspaceClient(config=config)
