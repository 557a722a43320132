"""Operations: the demo, the scheduler and its jobs, the SQL shell, lake tables and system status."""

from pipelines.ops.demo import run_demo
from pipelines.ops.jobs import history, last_runs, load_jobs
from pipelines.ops.lake_info import lake_tables
from pipelines.ops.scheduler import Scheduler, run_now
from pipelines.ops.status import system_status

__all__ = ["Scheduler", "history", "last_runs", "lake_tables", "load_jobs", "run_demo", "run_now", "system_status"]
