# Databricks notebook source
# MAGIC %md
# MAGIC # ModelValidation
# MAGIC
# MAGIC Second task of `model_training_job`. Loads the model that `Train` just
# MAGIC registered (task value `model_uri`, or the `model_uri` widget when set),
# MAGIC scores it on a hold-out set and **fails the task** when the AUC is below
# MAGIC `min_auc` or the accuracy below `min_accuracy`. Set `min_auc` above 1 to
# MAGIC force a failure.
# MAGIC
# MAGIC Task values set: `validation_auc`, `validation_accuracy`, `validation_passed`.

# COMMAND ----------

import json
import os
import sys

bundle_root = os.path.abspath(os.path.join(os.getcwd(), "..", ".."))
if bundle_root not in sys.path:
    sys.path.insert(0, bundle_root)

from churn import pipeline  # noqa: E402
from churn.validation import ValidationFailed  # noqa: E402

# COMMAND ----------

dbutils.widgets.text("env", "dev")
dbutils.widgets.text("model_uri", "")
dbutils.widgets.text("min_auc", "0.7")
dbutils.widgets.text("min_accuracy", "0.6")
dbutils.widgets.text("validation_rows", "1000")
dbutils.widgets.text("seed", str(pipeline.VALIDATION_SEED))

env = dbutils.widgets.get("env")
min_auc = pipeline.parse_number("min_auc", dbutils.widgets.get("min_auc"))
min_accuracy = pipeline.parse_number("min_accuracy", dbutils.widgets.get("min_accuracy"))
validation_rows = pipeline.parse_number("validation_rows", dbutils.widgets.get("validation_rows"), int)
seed = pipeline.parse_number("seed", dbutils.widgets.get("seed"), int)

model_uri = dbutils.widgets.get("model_uri") or dbutils.jobs.taskValues.get(
    taskKey="Train", key="model_uri", default="", debugValue=""
)
if not model_uri:
    raise ValueError("no model to validate: set the model_uri widget or run the Train task first")

# COMMAND ----------

result = pipeline.run_validation(
    model_uri, min_auc=min_auc, min_accuracy=min_accuracy, rows=validation_rows, seed=seed
)
print(
    "[%s] validation AUC %.4f (min %.4f), accuracy %.4f (min %.4f)"
    % (env, result["validation_auc"], min_auc, result["validation_accuracy"], min_accuracy)
)

dbutils.jobs.taskValues.set(key="validation_auc", value=result["validation_auc"])
dbutils.jobs.taskValues.set(key="validation_accuracy", value=result["validation_accuracy"])
dbutils.jobs.taskValues.set(key="validation_passed", value=result["passed"])

# COMMAND ----------

if not result["passed"]:
    raise ValidationFailed("model validation failed: " + "; ".join(result["failures"]))

dbutils.notebook.exit(json.dumps(result))
