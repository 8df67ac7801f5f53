"""The CI platform layer: one interface over GitHub Actions, Azure DevOps and a laptop.

``detect()`` picks the platform from the environment; every block talks to the
``Platform`` it returns and never writes a workflow or logging command itself.
"""

from __future__ import annotations

import os
from typing import Mapping

from .base import Platform, valid_output_name
from .github import GitHubPlatform
from .azure import AzurePlatform
from .local import LocalPlatform

__all__ = ["Platform", "GitHubPlatform", "AzurePlatform", "LocalPlatform", "detect", "valid_output_name"]


def detect(environ: Mapping[str, str] | None = None) -> Platform:
    """GitHub when ``GITHUB_ACTIONS=true``, Azure DevOps when ``TF_BUILD=True``, else local."""
    env = os.environ if environ is None else environ
    if env.get("GITHUB_ACTIONS", "").lower() == "true":
        return GitHubPlatform(env)
    if env.get("TF_BUILD", "").lower() == "true":
        return AzurePlatform(env)
    return LocalPlatform(env)
