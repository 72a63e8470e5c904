"""Reliability tests reuse the training tests' MDS token data."""

from tests.training.conftest import token_data  # noqa: F401  (a fixture)
