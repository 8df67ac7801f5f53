"""Feature engineering: tenure buckets, one-hot contract, standardised numerics."""

import math

from churn.data import CONTRACTS

NUMERIC_COLUMNS = ("tenure_months", "monthly_charges", "support_calls")

# (lower bound inclusive, upper bound exclusive or None, name)
TENURE_BUCKETS = (
    (0, 12, "tenure_0_12"),
    (12, 24, "tenure_12_24"),
    (24, 48, "tenure_24_48"),
    (48, None, "tenure_48_plus"),
)


def tenure_bucket(months):
    """Name of the bucket that ``months`` falls into."""
    if months < 0:
        raise ValueError("tenure cannot be negative: %r" % (months,))
    for low, high, name in TENURE_BUCKETS:
        if months >= low and (high is None or months < high):
            return name
    raise AssertionError("unreachable")  # the last bucket is open-ended


def feature_names():
    names = ["%s_std" % column for column in NUMERIC_COLUMNS]
    names += [name for _, _, name in TENURE_BUCKETS]
    names += ["contract_%s" % contract.replace("-", "_") for contract in CONTRACTS]
    names.append("paperless_billing")
    return names


def fit_scaler(rows):
    """Mean and (population) standard deviation of each numeric column."""
    if not rows:
        raise ValueError("cannot fit a scaler on zero rows")
    mean, std = {}, {}
    for column in NUMERIC_COLUMNS:
        values = [float(row[column]) for row in rows]
        mu = sum(values) / len(values)
        variance = sum((v - mu) ** 2 for v in values) / len(values)
        mean[column] = mu
        # A constant column would divide by zero: leave it centred but unscaled.
        std[column] = math.sqrt(variance) if variance > 0 else 1.0
    return {"mean": mean, "std": std}


def build_features(row, scaler):
    """One row -> a list of floats in the order of :func:`feature_names`."""
    vector = [
        (float(row[column]) - scaler["mean"][column]) / scaler["std"][column]
        for column in NUMERIC_COLUMNS
    ]
    bucket = tenure_bucket(row["tenure_months"])
    vector += [1.0 if name == bucket else 0.0 for _, _, name in TENURE_BUCKETS]
    if row["contract"] not in CONTRACTS:
        raise ValueError("unknown contract type %r" % (row["contract"],))
    vector += [1.0 if row["contract"] == contract else 0.0 for contract in CONTRACTS]
    vector.append(1.0 if row["paperless_billing"] else 0.0)
    return vector


def build_matrix(rows, scaler):
    return [build_features(row, scaler) for row in rows]


def labels(rows):
    return [int(row["churned"]) for row in rows]
