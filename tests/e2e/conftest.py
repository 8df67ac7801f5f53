"""The fixtures of tests/e2e; they and the helpers its tests import live in e2e_support.py,
a module name of its own (every test folder has a conftest, and `from conftest import`
would pick whichever folder's was imported first)."""

from e2e_support import *  # noqa: F401,F403
