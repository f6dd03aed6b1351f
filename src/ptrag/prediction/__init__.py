"""Prediction from trained runs: held-out groups, in-silico queries, retrieval records."""
