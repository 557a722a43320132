"""OSS service fulfilment: the Bytewax dataflow over :mod:`pipelines.oss` (orders, provisioning results
and the clock in; commands, BSS lifecycle events, order state and jeopardy out).

Run it with ``telcolake fulfil`` or ``python -m bytewax.run dataflows.fulfilment:flow`` (``flow`` is
built lazily from the environment; ``TELCOLAKE_UNTIL_CAUGHT_UP=1`` stops once caught up). Plain
``bytewax.run`` does not tick the clock: run ``telcolake fulfil`` (or tick ``orders.clock``) for timers.
"""

from __future__ import annotations

from pipelines.oss.flow import build_flow


def __getattr__(attr: str):
    if attr == "flow":
        import os

        from pipelines.core.config import load_settings
        from pipelines.oss.run import prepare_topics

        settings = load_settings()
        prepare_topics(settings)
        return build_flow(settings, until_caught_up=os.environ.get("TELCOLAKE_UNTIL_CAUGHT_UP") == "1")
    raise AttributeError(attr)


__all__ = ["build_flow"]
