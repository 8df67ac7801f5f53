import math

import pytest

from churn import data, features


def test_generation_is_deterministic_per_seed():
    assert data.generate_customers(50, seed=3) == data.generate_customers(50, seed=3)
    assert data.generate_customers(50, seed=3) != data.generate_customers(50, seed=4)


def test_generated_fields_are_in_range():
    rows = data.generate_customers(500, seed=5)
    assert len({row["customer_id"] for row in rows}) == 500
    for row in rows:
        assert row["contract"] in data.CONTRACTS
        assert 0 <= row["tenure_months"] <= 72
        assert 18.0 <= row["monthly_charges"] <= 130.0
        assert 0 <= row["support_calls"] <= 9
        assert row["churned"] in (0, 1)
    churn_rate = sum(row["churned"] for row in rows) / len(rows)
    assert 0.2 < churn_rate < 0.7


@pytest.mark.parametrize(
    "months, bucket",
    [(0, "tenure_0_12"), (11, "tenure_0_12"), (12, "tenure_12_24"),
     (47, "tenure_24_48"), (48, "tenure_48_plus"), (500, "tenure_48_plus")],
)
def test_tenure_bucket_boundaries(months, bucket):
    assert features.tenure_bucket(months) == bucket


def test_tenure_bucket_rejects_negative():
    with pytest.raises(ValueError):
        features.tenure_bucket(-1)


def test_standardised_columns_have_zero_mean_unit_std(train_rows):
    scaler = features.fit_scaler(train_rows)
    matrix = features.build_matrix(train_rows, scaler)
    for j in range(len(features.NUMERIC_COLUMNS)):
        column = [vector[j] for vector in matrix]
        mean = sum(column) / len(column)
        std = math.sqrt(sum((v - mean) ** 2 for v in column) / len(column))
        assert mean == pytest.approx(0.0, abs=1e-9)
        assert std == pytest.approx(1.0, rel=1e-9)


def test_feature_vector_layout(train_rows):
    scaler = features.fit_scaler(train_rows)
    names = features.feature_names()
    for row in train_rows[:20]:
        vector = features.build_features(row, scaler)
        assert len(vector) == len(names)
        one_hot = dict(zip(names, vector))
        assert sum(v for k, v in one_hot.items() if k.startswith("tenure_") and not k.endswith("_std")) == 1.0
        assert sum(v for k, v in one_hot.items() if k.startswith("contract_")) == 1.0


def test_constant_column_does_not_divide_by_zero():
    rows = [dict(row, support_calls=2) for row in data.generate_customers(10, seed=0)]
    scaler = features.fit_scaler(rows)
    assert scaler["std"]["support_calls"] == 1.0
    assert features.build_features(rows[0], scaler)[2] == 0.0
