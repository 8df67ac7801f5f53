"""Cutting releases: semantic versions, git, release notes and the ``cut-release`` command."""
