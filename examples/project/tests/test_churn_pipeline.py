import csv
import json
import os
import subprocess
import sys

import pytest

from churn import pipeline, registry
from churn.validation import ValidationFailed

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = [
    "training/notebooks/Train.py",
    "validation/notebooks/ModelValidation.py",
    "deployment/notebooks/ModelDeployment.py",
]
MODEL = "test.churn_model.churn_model"


@pytest.fixture()
def trained(tmp_path):
    return pipeline.run_training(MODEL, registry_dir=str(tmp_path), rows=300, epochs=40)


def test_registry_versions_and_aliases(tmp_path, trained):
    assert trained["model_version"] == 1
    second = pipeline.run_training(MODEL, registry_dir=str(tmp_path), rows=300, epochs=40)
    assert second["model_version"] == 2
    assert registry.list_versions(str(tmp_path), MODEL) == [1, 2]
    with pytest.raises(LookupError, match="no 'champion' alias"):
        registry.resolve_alias(str(tmp_path), MODEL, "champion")
    assert registry.set_alias(str(tmp_path), MODEL, "champion", 1) is None
    assert registry.set_alias(str(tmp_path), MODEL, "champion", 2) == 1
    assert registry.resolve_alias(str(tmp_path), MODEL, "champion") == second["model_uri"]
    with pytest.raises(LookupError):
        registry.set_alias(str(tmp_path), MODEL, "champion", 9)


def test_training_is_reproducible(tmp_path, trained):
    again = pipeline.run_training(MODEL, registry_dir=str(tmp_path), rows=300, epochs=40)
    first, second = registry.load_model(trained["model_uri"]), registry.load_model(again["model_uri"])
    assert first["weights"] == second["weights"] and first["bias"] == second["bias"]
    assert json.loads(json.dumps(trained)) == trained  # task values must be JSON


def test_validation_passes_then_deployment_sets_alias(tmp_path, trained):
    result = pipeline.run_validation(trained["model_uri"], min_auc=0.7, rows=300)
    assert result["passed"] and result["failures"] == []
    deployed = pipeline.run_deployment(
        trained["registry_dir"], MODEL, trained["model_version"], result["passed"]
    )
    assert deployed["deployed_version"] == 1 and deployed["previous_version"] is None
    assert registry.get_aliases(str(tmp_path), MODEL) == {"champion": 1}


def test_impossible_threshold_fails_validation_and_blocks_deployment(tmp_path, trained):
    result = pipeline.run_validation(trained["model_uri"], min_auc=1.01, rows=300)
    assert not result["passed"]
    assert result["failures"][0].startswith("auc=")
    with pytest.raises(ValidationFailed):
        pipeline.run_deployment(trained["registry_dir"], MODEL, 1, result["passed"])
    assert registry.get_aliases(str(tmp_path), MODEL) == {}


def test_parse_number_names_the_parameter():
    assert pipeline.parse_number("epochs", " 12 ", int) == 12
    with pytest.raises(ValueError, match="'min_auc' must be a float"):
        pipeline.parse_number("min_auc", "high")


def _predict(*args):
    script = os.path.join(PROJECT, "deployment", "batch_inference", "predict.py")
    return subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, timeout=60, cwd="/"
    )


def test_batch_inference_script_scores_champion(tmp_path, trained):
    registry.set_alias(str(tmp_path), MODEL, "champion", trained["model_version"])
    output = tmp_path / "out" / "predictions.csv"
    proc = _predict("--env", "test", "--model-name", MODEL, "--registry-dir", str(tmp_path),
                    "--input-rows", "25", "--output", str(output))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["rows"] == 25 and summary["model_uri"] == trained["model_uri"]
    with open(output, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 25
    assert all(0.0 <= float(row["churn_probability"]) <= 1.0 for row in rows)
    assert {row["model_version"] for row in rows} == {"1"}


def test_batch_inference_without_model_exits_1(tmp_path):
    proc = _predict("--model-name", MODEL, "--registry-dir", str(tmp_path))
    assert proc.returncode == 1
    assert "run the training job first" in proc.stderr


@pytest.mark.parametrize("relative", NOTEBOOKS)
def test_notebooks_are_source_format_and_compile(relative):
    with open(os.path.join(PROJECT, relative), encoding="utf-8") as handle:
        source = handle.read()
    assert source.splitlines()[0] == "# Databricks notebook source"
    assert "\n# COMMAND ----------\n" in source
    assert "dbutils.notebook.exit(json.dumps(" in source
    compile(source, relative, "exec")
