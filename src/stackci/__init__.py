"""stackci: reusable CI/CD building blocks for MLOps Stacks projects on Databricks."""

__version__ = "0.1.0"
