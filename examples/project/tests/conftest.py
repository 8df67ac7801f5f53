import pytest

from churn import data


@pytest.fixture(scope="session")
def train_rows():
    return data.generate_customers(400, seed=1)


@pytest.fixture(scope="session")
def holdout_rows():
    return data.generate_customers(600, seed=2)
