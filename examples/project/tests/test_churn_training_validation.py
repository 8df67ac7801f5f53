import json

import pytest

from churn import features, training, validation


def test_sigmoid_is_stable_at_extremes():
    assert training.sigmoid(0.0) == 0.5
    assert training.sigmoid(1000.0) == 1.0
    assert training.sigmoid(-1000.0) == 0.0


def test_loss_decreases_and_training_is_deterministic(train_rows):
    scaler = features.fit_scaler(train_rows)
    X, y = features.build_matrix(train_rows, scaler), features.labels(train_rows)
    weights, bias, history = training.fit_logistic_regression(X, y, epochs=60)
    assert history[-1] < history[0] - 0.1
    assert all(later <= earlier + 1e-12 for earlier, later in zip(history, history[1:]))
    assert training.fit_logistic_regression(X, y, epochs=60) == (weights, bias, history)


def test_trained_model_generalises_and_is_json_serialisable(train_rows, holdout_rows):
    model = training.train_model(train_rows, epochs=60)
    model = json.loads(json.dumps(model))
    metrics = validation.evaluate(model, holdout_rows)
    assert metrics["auc"] > 0.8
    assert metrics["accuracy"] > 0.7
    # Learnt signs match how the data was generated.
    weights = dict(zip(model["feature_names"], model["weights"]))
    assert weights["support_calls_std"] > 0
    assert weights["contract_two_year"] < weights["contract_month_to_month"]


def test_predict_rejects_foreign_model(train_rows):
    with pytest.raises(ValueError, match="format"):
        training.predict_proba({"format": "something-else"}, train_rows)


def test_roc_auc_known_values():
    assert validation.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert validation.roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert validation.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert validation.roc_auc([0, 1, 0, 1], [0.1, 0.4, 0.5, 0.8]) == 0.75
    with pytest.raises(ValueError):
        validation.roc_auc([1, 1], [0.2, 0.3])


def test_accuracy():
    assert validation.accuracy([1, 0, 1, 0], [0.9, 0.1, 0.4, 0.6]) == 0.5


def test_thresholds_pass_and_fail():
    metrics = {"auc": 0.82, "accuracy": 0.75}
    validation.check_thresholds(metrics, {"auc": 0.7, "accuracy": 0.6})
    with pytest.raises(validation.ValidationFailed, match="auc=0.8200 is below the minimum 1.0100"):
        validation.check_thresholds(metrics, {"auc": 1.01, "accuracy": 0.6})
    assert validation.threshold_failures(metrics, {"f1": 0.5}) == ["f1 is missing"]
