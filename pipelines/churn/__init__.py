"""Churn: point-in-time daily features, labels, a baseline score and contextual offers."""
