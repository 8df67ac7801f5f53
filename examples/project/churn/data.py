"""Deterministic synthetic customer data.

Each customer has a contract type, a tenure, a monthly charge, a number of
support calls and a paperless-billing flag. The churn label is drawn from a
logistic model of those fields, so a learner can recover a real signal but
never a perfect one.
"""

import math
import random

CONTRACTS = ("month-to-month", "one-year", "two-year")

# Probability of each contract type (cumulative thresholds are built below).
_CONTRACT_WEIGHTS = (0.55, 0.25, 0.20)

# Tenure range in months for each contract type.
_TENURE_RANGE = {
    "month-to-month": (0, 36),
    "one-year": (6, 60),
    "two-year": (12, 72),
}


def _pick_contract(rng):
    draw = rng.random()
    cumulative = 0.0
    for contract, weight in zip(CONTRACTS, _CONTRACT_WEIGHTS):
        cumulative += weight
        if draw < cumulative:
            return contract
    return CONTRACTS[-1]


def churn_logit(row):
    """The true log-odds of churn used to draw the label."""
    logit = 1.0
    logit -= 0.06 * row["tenure_months"]
    logit += 0.025 * (row["monthly_charges"] - 70.0)
    logit += 0.4 * row["support_calls"]
    logit += 0.4 if row["paperless_billing"] else 0.0
    if row["contract"] == "one-year":
        logit -= 1.0
    elif row["contract"] == "two-year":
        logit -= 2.0
    return logit


def generate_customers(n, seed=0):
    """Return ``n`` customer rows (dicts); the same ``(n, seed)`` gives the same rows."""
    if n < 0:
        raise ValueError("n must be >= 0, got %r" % (n,))
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        contract = _pick_contract(rng)
        low, high = _TENURE_RANGE[contract]
        row = {
            "customer_id": "C%d-%05d" % (seed, i),
            "contract": contract,
            "tenure_months": rng.randint(low, high),
            "monthly_charges": round(min(130.0, max(18.0, rng.gauss(70.0, 22.0))), 2),
            "support_calls": min(9, int(rng.expovariate(0.7))),
            "paperless_billing": rng.random() < 0.6,
        }
        probability = 1.0 / (1.0 + math.exp(-churn_logit(row)))
        row["churned"] = 1 if rng.random() < probability else 0
        rows.append(row)
    return rows
