"""`telcolake up`: the supervised single-node service (components, scheduler, operator endpoints)."""

from pipelines.ops.up.service import Service, run_up
from pipelines.ops.up.settings import ServiceSettings

__all__ = ["Service", "ServiceSettings", "run_up"]
