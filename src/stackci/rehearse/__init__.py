"""``stackci rehearse``: the whole CI/CD flow of an MLOps Stacks project, on this machine.

No credentials and no network: the project is copied into a throwaway git repository
with a local bare ``origin``, the local workspace (:mod:`stackci.workspace`) stands in
for every Databricks workspace, and each stage runs the same subcommand the GitHub
action or Azure template of that block runs:

    unit tests -> validate + plan (staging, prod) -> integration test (isolated copy)
    -> deploy staging (merge to main) -> cut release -> deploy prod (release branch)
    -> smoke run (prod)

:mod:`.sandbox` builds the repositories, the project's interpreter and the process
environment; :mod:`.flow` runs the stages and reports them; :mod:`.cli` is the command.
Nothing is imported or started at import time.
"""
