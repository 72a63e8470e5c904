"""Reliability tests reuse the training tests' MDS token data (a fresh copy per test)."""

from tests.training.conftest import pristine_token_data, token_data  # noqa: F401  (fixtures)
