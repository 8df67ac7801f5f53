# Databricks notebook source
# MAGIC %md
# MAGIC # ModelDeployment
# MAGIC
# MAGIC Last task of `model_training_job`. Runs only after `ModelValidation`
# MAGIC succeeded; points the `alias` widget's alias (default `champion`) at the
# MAGIC version `Train` registered, which is what `batch_inference_job` scores with.
# MAGIC
# MAGIC Reads task values `model_name`, `model_version`, `registry_dir` from `Train`
# MAGIC and `validation_passed` from `ModelValidation`; sets `deployed_version`.

# COMMAND ----------

import json
import os
import sys

bundle_root = os.path.abspath(os.path.join(os.getcwd(), "..", ".."))
if bundle_root not in sys.path:
    sys.path.insert(0, bundle_root)

from churn import pipeline  # noqa: E402

# COMMAND ----------

dbutils.widgets.text("env", "dev")
dbutils.widgets.text("alias", "champion")

env = dbutils.widgets.get("env")
alias = dbutils.widgets.get("alias")

model_name = dbutils.jobs.taskValues.get(taskKey="Train", key="model_name", default="", debugValue="")
model_version = dbutils.jobs.taskValues.get(taskKey="Train", key="model_version", default=0, debugValue=0)
registry_dir = dbutils.jobs.taskValues.get(taskKey="Train", key="registry_dir", default="", debugValue="")
validation_passed = dbutils.jobs.taskValues.get(
    taskKey="ModelValidation", key="validation_passed", default=False, debugValue=False
)
if not model_name or not model_version or not registry_dir:
    raise ValueError("missing task values from Train: run this notebook as part of model_training_job")

# COMMAND ----------

result = pipeline.run_deployment(
    registry_dir, model_name, model_version, validation_passed, alias=alias
)
result["env"] = env
print(
    "[%s] %s@%s -> version %s (was %s)"
    % (env, model_name, alias, result["deployed_version"], result["previous_version"])
)
dbutils.jobs.taskValues.set(key="deployed_version", value=result["deployed_version"])

# COMMAND ----------

dbutils.notebook.exit(json.dumps(result))
