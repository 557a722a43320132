"""OSS service fulfilment: product orders decomposed into provisioning steps, run as sagas on Kafka."""

from pipelines.oss.drive import run_simulation, simulate_fulfilment
from pipelines.oss.fallout import cancel_order, list_orders, retry_order, show_order
from pipelines.oss.kpis import figures, kpis
from pipelines.oss.order_sim import OrderSimConfig, simulate_orders
from pipelines.oss.replay import read_state_topic, rebuild_orders
from pipelines.oss.responders import ResponderStats, run_responders
from pipelines.oss.run import FulfilStats, run_fulfilment

__all__ = [
    "FulfilStats", "OrderSimConfig", "ResponderStats", "cancel_order", "figures", "kpis", "list_orders", "read_state_topic",
    "rebuild_orders", "retry_order", "run_fulfilment", "run_responders", "run_simulation", "show_order", "simulate_fulfilment",
    "simulate_orders",
]
