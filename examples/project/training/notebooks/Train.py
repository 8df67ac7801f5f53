# Databricks notebook source
# MAGIC %md
# MAGIC # Train
# MAGIC
# MAGIC First task of `model_training_job`. Generates the synthetic training set,
# MAGIC fits the churn model, registers it as a new version in the file-based
# MAGIC registry and hands the model URI and version to the next tasks through
# MAGIC task values (`model_uri`, `model_name`, `model_version`, `registry_dir`,
# MAGIC `train_auc`).
# MAGIC
# MAGIC Parameters (widgets): `env`, `experiment_name`, `model_name`,
# MAGIC `registry_dir` (empty = a directory under the temp dir), `training_rows`,
# MAGIC `seed`, `epochs`, `learning_rate`.

# COMMAND ----------

import json
import os
import sys

# A workspace notebook runs with its own folder as the working directory; the
# bundle root (which holds the `churn` package) is two levels up.
bundle_root = os.path.abspath(os.path.join(os.getcwd(), "..", ".."))
if bundle_root not in sys.path:
    sys.path.insert(0, bundle_root)

from churn import pipeline  # noqa: E402

# COMMAND ----------

dbutils.widgets.text("env", "dev")
dbutils.widgets.text("experiment_name", "/Shared/dev-churn_model-experiment")
dbutils.widgets.text("model_name", "dev.churn_model.churn_model")
dbutils.widgets.text("registry_dir", "")
dbutils.widgets.text("training_rows", "1000")
dbutils.widgets.text("seed", str(pipeline.TRAIN_SEED))
dbutils.widgets.text("epochs", "150")
dbutils.widgets.text("learning_rate", "0.5")

env = dbutils.widgets.get("env")
experiment_name = dbutils.widgets.get("experiment_name")
model_name = dbutils.widgets.get("model_name")
registry_dir = dbutils.widgets.get("registry_dir")
training_rows = pipeline.parse_number("training_rows", dbutils.widgets.get("training_rows"), int)
seed = pipeline.parse_number("seed", dbutils.widgets.get("seed"), int)
epochs = pipeline.parse_number("epochs", dbutils.widgets.get("epochs"), int)
learning_rate = pipeline.parse_number("learning_rate", dbutils.widgets.get("learning_rate"))

# COMMAND ----------

result = pipeline.run_training(
    model_name,
    registry_dir=registry_dir,
    rows=training_rows,
    seed=seed,
    epochs=epochs,
    learning_rate=learning_rate,
    env=env,
    experiment_name=experiment_name,
)
print("Registered %s version %s (train AUC %.4f)" % (model_name, result["model_version"], result["train_auc"]))

# COMMAND ----------

for key in ("model_uri", "model_name", "model_version", "registry_dir", "train_auc"):
    dbutils.jobs.taskValues.set(key=key, value=result[key])

# COMMAND ----------

dbutils.notebook.exit(json.dumps(result))
