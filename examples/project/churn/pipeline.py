"""The steps of the training workflow and of batch inference.

The notebooks and the batch script are thin: they read parameters, call one
function here and pass the result on. Keeping the logic here lets the unit tests
exercise exactly what the jobs run.
"""

import csv
import os

from churn import data, registry, training, validation

# Seeds of the synthetic data sets: training, hold-out validation, scoring.
TRAIN_SEED = 42
VALIDATION_SEED = 4242
SCORING_SEED = 7


def parse_number(name, value, kind=float):
    """Parse a widget / argv string, naming the parameter when it is malformed."""
    try:
        return kind(str(value).strip())
    except ValueError:
        raise ValueError("parameter %r must be a %s, got %r" % (name, kind.__name__, value)) from None


def run_training(model_name, registry_dir="", rows=1000, seed=TRAIN_SEED, epochs=150,
                 learning_rate=0.5, env="dev", experiment_name=""):
    """Train on synthetic data, register a new model version, return what later tasks need."""
    registry_dir = registry_dir or registry.default_registry_dir()
    customers = data.generate_customers(rows, seed=seed)
    model = training.train_model(customers, epochs=epochs, learning_rate=learning_rate)
    metrics = validation.evaluate(model, customers)
    model["training"]["metrics"] = metrics
    model["metadata"] = {"env": env, "experiment_name": experiment_name, "seed": seed}
    model_uri, version = registry.register_model(registry_dir, model_name, model)
    return {
        "model_uri": model_uri,
        "model_name": model_name,
        "model_version": version,
        "registry_dir": os.path.abspath(registry_dir),
        "train_auc": round(metrics["auc"], 6),
        "train_accuracy": round(metrics["accuracy"], 6),
        "training_rows": rows,
    }


def run_validation(model_uri, min_auc=0.7, min_accuracy=0.6, rows=1000, seed=VALIDATION_SEED):
    """Score the candidate on a hold-out set; ``passed`` is False when a threshold is missed."""
    model = registry.load_model(model_uri)
    metrics = validation.evaluate(model, data.generate_customers(rows, seed=seed))
    failures = validation.threshold_failures(
        metrics, {"auc": min_auc, "accuracy": min_accuracy}
    )
    return {
        "model_uri": model_uri,
        "validation_auc": round(metrics["auc"], 6),
        "validation_accuracy": round(metrics["accuracy"], 6),
        "validation_rows": rows,
        "min_auc": min_auc,
        "min_accuracy": min_accuracy,
        "passed": not failures,
        "failures": failures,
    }


def run_deployment(registry_dir, model_name, model_version, validation_passed, alias="champion"):
    """Point ``alias`` at the validated version; refuse a version that did not pass."""
    if validation_passed is not True:
        raise validation.ValidationFailed(
            "refusing to deploy %s version %s: validation did not pass" % (model_name, model_version)
        )
    previous = registry.set_alias(registry_dir, model_name, alias, int(model_version))
    return {
        "model_name": model_name,
        "alias": alias,
        "deployed_version": int(model_version),
        "previous_version": previous,
        "model_uri": registry.model_uri_for(registry_dir, model_name, int(model_version)),
    }


def batch_predict(model_uri, rows=500, seed=SCORING_SEED, cutoff=0.5):
    """Score a batch of synthetic customers; return a list of prediction dicts."""
    model = registry.load_model(model_uri)
    customers = data.generate_customers(rows, seed=seed)
    probabilities = training.predict_proba(model, customers)
    return [
        {
            "customer_id": customer["customer_id"],
            "churn_probability": round(p, 6),
            "prediction": 1 if p >= cutoff else 0,
            "model_version": model.get("version"),
        }
        for customer, p in zip(customers, probabilities)
    ]


def write_predictions(path, predictions):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fields = ["customer_id", "churn_probability", "prediction", "model_version"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(predictions)
    return os.path.abspath(path)
