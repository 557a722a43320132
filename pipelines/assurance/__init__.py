"""Predictive maintenance: warn about a cell's outage before it happens, and prove the lead time."""
