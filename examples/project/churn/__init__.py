"""Churn model example: synthetic data, features, a logistic-regression trainer,
validation metrics and a small file-based model registry.

Standard library only, so the same code runs on a Databricks cluster, on a CI
runner and on a local Databricks stand-in without Spark, pandas or MLflow.
"""

__all__ = ["data", "features", "training", "validation", "registry", "pipeline"]
