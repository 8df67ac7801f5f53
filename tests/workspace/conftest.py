"""The fixtures of tests/workspace; they and the helpers its tests import live in workspace_support.py,
a module name of its own (every test folder has a conftest, and `from conftest import`
would pick whichever folder's was imported first)."""

from workspace_support import *  # noqa: F401,F403
