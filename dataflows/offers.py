"""Offer triggers (repeated dropped calls) from ``usage.events``: the Bytewax dataflow over
:mod:`pipelines.streams.offers`.

Run it with ``telcolake stream --only offers`` or ``python -m bytewax.run dataflows.offers:flow``
(``flow`` is built lazily from the environment; ``TELCOLAKE_UNTIL_CAUGHT_UP=1`` stops once caught up).
"""

from pipelines.streams.flow import flow_module
from pipelines.streams.offers import spec

build_flow, __getattr__ = flow_module("offers", spec, "The offer-trigger dataflow.")
