"""Billing: tariff catalog, rating, bill runs and rerates (SQL in sql/billing, orchestrated here)."""
