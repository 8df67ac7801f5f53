from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from stackci.bundle import load_bundle
from stackci.errors import ConfigError

NOTEBOOK = "# Databricks notebook source\nprint('hi')\n"


@pytest.fixture
def write(tmp_path):
    """Write files (relative path → text, dedented) under tmp_path/proj and return the folder."""
    root = tmp_path / "proj"

    def make(files: dict[str, str]) -> Path:
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip("\n"))
        root.mkdir(exist_ok=True)
        return root
    return make


@pytest.fixture
def load(write):
    """Write a bundle and load it: load(files, target=..., **kwargs)."""
    def run(files: dict[str, str], target: str | None = None, **kwargs):
        root = write(files)
        kwargs.setdefault("current_user", "alice.smith@example.com")
        kwargs.setdefault("env", {})
        return load_bundle(root, target, **kwargs)
    return run


@pytest.fixture
def fails(load):
    """Load a bundle that must fail; return the ConfigError."""
    def run(files: dict[str, str], target: str | None = None, **kwargs) -> ConfigError:
        with pytest.raises(ConfigError) as info:
            load(files, target, **kwargs)
        return info.value
    return run
