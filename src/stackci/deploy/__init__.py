"""Deploying a bundle: plan (diff of configuration and remote state), incremental file sync,
resources (jobs, experiments, registered models) in dependency order, state and lock.

The commands are in :mod:`stackci.deploy.cli`; :class:`stackci.deploy.engine.Engine`
does the work. Nothing is imported or contacted at import time.
"""
