"""The local workspace: a Databricks-compatible REST server on loopback and a local task executor."""
