"""Evaluation metrics and threshold checks."""

from churn import features, training


class ValidationFailed(Exception):
    """A metric is below its required minimum."""


def accuracy(y, probabilities, cutoff=0.5):
    if not y:
        raise ValueError("no labels")
    hits = sum(1 for label, p in zip(y, probabilities) if (p >= cutoff) == (label == 1))
    return hits / len(y)


def roc_auc(y, scores):
    """Area under the ROC curve via the rank-sum statistic (ties count half)."""
    positives = sum(1 for label in y if label == 1)
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("AUC needs at least one positive and one negative label")
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        average_rank = (i + j) / 2.0 + 1.0  # ranks are 1-based
        for k in range(i, j + 1):
            ranks[order[k]] = average_rank
        i = j + 1
    rank_sum = sum(rank for rank, label in zip(ranks, y) if label == 1)
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def evaluate(model, rows):
    y = features.labels(rows)
    probabilities = training.predict_proba(model, rows)
    return {
        "auc": roc_auc(y, probabilities),
        "accuracy": accuracy(y, probabilities),
        "log_loss": training.log_loss(y, probabilities),
        "rows": len(rows),
    }


def threshold_failures(metrics, minimums):
    """One message per metric that is missing or below its minimum (empty = pass)."""
    failures = []
    for name, minimum in sorted(minimums.items()):
        if name not in metrics:
            failures.append("%s is missing" % name)
        elif metrics[name] < minimum:
            failures.append("%s=%.4f is below the minimum %.4f" % (name, metrics[name], minimum))
    return failures


def check_thresholds(metrics, minimums):
    """Raise :class:`ValidationFailed` listing every metric below its minimum."""
    failures = threshold_failures(metrics, minimums)
    if failures:
        raise ValidationFailed("model validation failed: " + "; ".join(failures))
