"""A stream flow publishes its landed offsets to its own consumer group (read back with the admin API)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from pipelines.core.broker import end_offsets
from pipelines.core.config import load_settings
from pipelines.ingest.offsets import group_offsets
from pipelines.streams import run_streams
from tests.integration.streams.scenarios import network_load, produce_keyed


def test_a_stream_flow_commits_its_offsets_to_its_own_group(senv, kafka):
    prefix = f"telcolake-{uuid.uuid4().hex[:6]}-"
    path = Path(os.environ["TELCOLAKE_CONFIG"])
    path.write_text(path.read_text().replace('consumer_group_prefix = "telcolake-"', f'consumer_group_prefix = "{prefix}"'))
    settings = load_settings()
    topic = settings.topic("network.events")
    produce_keyed(kafka, topic, network_load(5, 2, 12), "site_id", partitions=2)
    run_streams(settings, only="kpi", until_caught_up=True)
    assert {p: o for (t, p), o in group_offsets(kafka, f"{prefix}kpi").items() if t == topic} == end_offsets(kafka, topic)
