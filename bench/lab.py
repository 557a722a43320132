"""A bench's private world: a temp dir with its own embedded broker, lake, state and a copy of telcolake.toml."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.core import broker
from pipelines.core.config import REPO_ROOT, Settings, load_settings


@contextmanager
def private_world(prefix: str, *, broker_dir: str = "broker", keep: bool = False) -> Iterator[tuple[Path, Settings, str]]:
    """(temp dir, its settings, the broker address); the broker stops at the end, the dir goes unless ``keep``."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    state = broker.start_embedded(tmp / broker_dir)
    try:
        os.environ.update(TELCOLAKE_STATE_DIR=str(tmp / "state"), TELCOLAKE_LAKE=str(tmp / "lake"), TELCOLAKE_KAFKA_BOOTSTRAP=state.address)
        (tmp / "telcolake.toml").write_text((REPO_ROOT / "telcolake.toml").read_text())
        os.environ["TELCOLAKE_CONFIG"] = str(tmp / "telcolake.toml")
        settings = load_settings()
        broker.ensure_topics(state.address, settings.topics)
        yield tmp, settings, state.address
    finally:
        broker.stop_embedded(tmp / broker_dir)
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
