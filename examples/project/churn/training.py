"""Logistic regression trained with full-batch gradient descent.

No shuffling and zero initial weights, so training is fully deterministic.
"""

import math

from churn import features

MODEL_FORMAT = "churn-logreg/v1"


def sigmoid(z):
    # Numerically stable for large |z|.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def log_loss(y, probabilities, eps=1e-12):
    total = 0.0
    for label, p in zip(y, probabilities):
        p = min(max(p, eps), 1.0 - eps)
        total -= label * math.log(p) + (1 - label) * math.log(1.0 - p)
    return total / len(y)


def fit_logistic_regression(X, y, epochs=200, learning_rate=0.5, l2=0.001):
    """Return ``(weights, bias, loss_history)``; one loss per epoch (before the update)."""
    if not X or len(X) != len(y):
        raise ValueError("X and y must be non-empty and of equal length")
    if epochs < 1 or learning_rate <= 0 or l2 < 0:
        raise ValueError("need epochs >= 1, learning_rate > 0 and l2 >= 0")
    n, d = len(X), len(X[0])
    weights = [0.0] * d
    bias = 0.0
    history = []
    for _ in range(epochs):
        grad_w = [0.0] * d
        grad_b = 0.0
        probabilities = []
        for row, label in zip(X, y):
            p = sigmoid(bias + sum(w * x for w, x in zip(weights, row)))
            probabilities.append(p)
            error = p - label
            grad_b += error
            for j, x in enumerate(row):
                grad_w[j] += error * x
        history.append(log_loss(y, probabilities) + 0.5 * l2 * sum(w * w for w in weights))
        bias -= learning_rate * grad_b / n
        weights = [
            w - learning_rate * (g / n + l2 * w) for w, g in zip(weights, grad_w)
        ]
    return weights, bias, history


def train_model(rows, epochs=200, learning_rate=0.5, l2=0.001):
    """Fit scaler + logistic regression on customer rows; return a JSON-able model dict."""
    scaler = features.fit_scaler(rows)
    X = features.build_matrix(rows, scaler)
    y = features.labels(rows)
    weights, bias, history = fit_logistic_regression(
        X, y, epochs=epochs, learning_rate=learning_rate, l2=l2
    )
    return {
        "format": MODEL_FORMAT,
        "feature_names": features.feature_names(),
        "weights": weights,
        "bias": bias,
        "scaler": scaler,
        "params": {"epochs": epochs, "learning_rate": learning_rate, "l2": l2},
        "training": {
            "rows": len(rows),
            "positive_rate": sum(y) / len(y),
            "initial_loss": history[0],
            "final_loss": history[-1],
        },
    }


def predict_proba(model, rows):
    """Churn probability for each row."""
    if model.get("format") != MODEL_FORMAT:
        raise ValueError("not a %s model: format=%r" % (MODEL_FORMAT, model.get("format")))
    if model["feature_names"] != features.feature_names():
        raise ValueError("model was trained on different features")
    weights, bias = model["weights"], model["bias"]
    return [
        sigmoid(bias + sum(w * x for w, x in zip(weights, features.build_features(row, model["scaler"]))))
        for row in rows
    ]
