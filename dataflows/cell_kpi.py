"""Cell KPIs per minute and network alerts from ``network.events``: the Bytewax dataflow over
:mod:`pipelines.streams.kpi`.

Run it with ``telcolake stream --only kpi`` or ``python -m bytewax.run dataflows.cell_kpi:flow``
(``flow`` is built lazily from the environment; ``TELCOLAKE_UNTIL_CAUGHT_UP=1`` stops once caught up).
"""

from pipelines.streams.flow import flow_module
from pipelines.streams.kpi import spec

build_flow, __getattr__ = flow_module("cell_kpi", spec, "The cell KPI + network alerts dataflow.")
