"""Fraud alerts (SIM box, international velocity) from ``usage.events``: the Bytewax dataflow over
:mod:`pipelines.streams.fraud`.

Run it with ``telcolake stream --only fraud`` or ``python -m bytewax.run dataflows.fraud:flow``
(``flow`` is built lazily from the environment; ``TELCOLAKE_UNTIL_CAUGHT_UP=1`` stops once caught up).
"""

from pipelines.streams.flow import flow_module
from pipelines.streams.fraud import spec

build_flow, __getattr__ = flow_module("fraud", spec, "The fraud dataflow.")
