"""Bytewax dataflows: one module per dataflow, each exposing ``flow`` built by a function."""
