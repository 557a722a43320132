"""Predictive maintenance tests."""
