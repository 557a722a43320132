"""Scale-out benchmark: ingest with 1 process vs 2 processes (2 workers each), local disk vs S3.

All runs land the same simulated usage events from one embedded broker into fresh lakes; the
S3 runs use a local moto server, so they measure the object-store protocol path, not a
network. Prints events/s and the ratios.

Usage: python bench/scale_out.py [--events 400000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import produce, usage_values  # noqa: E402

from pipelines.core import broker  # noqa: E402


def run(env: dict, *extra: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipelines.cli", "ingest", "--until-caught-up", "--no-silver", "--quiet", *extra], env=env, check=True)
    return time.perf_counter() - started


def moto(work: Path) -> tuple[subprocess.Popen, dict]:
    import boto3

    port = broker.free_port()
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1")
    for _ in range(100):
        try:
            client.create_bucket(Bucket="bench")
            break
        except Exception:
            time.sleep(0.1)
    return proc, {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
                  "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=400_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="telcolake-scale-"))
    state = broker.start_embedded(work / "state")
    base = dict(os.environ, TELCOLAKE_STATE_DIR=str(work / "state"), TELCOLAKE_KAFKA_BOOTSTRAP=state.address)
    base.pop("TELCOLAKE_CONFIG", None)
    proc = None
    try:
        broker.ensure_topics(state.address, {"usage.events": 4, "network.events": 1, "bss.events": 1})
        produce(state.address, "usage.events", usage_values(args.events), 4)
        one = run({**base, "TELCOLAKE_LAKE": str(work / "one")})
        two = run({**base, "TELCOLAKE_LAKE": str(work / "two")}, "--processes", "2", "--workers", "2")
        proc, s3 = moto(work)
        on_s3 = run({**base, **s3, "TELCOLAKE_LAKE": "s3://bench/lake"})
        n = args.events
        print(f"1 process, 1 worker, local disk:   {n / one:>10,.0f} events/s")
        print(f"2 processes x 2 workers, local:    {n / two:>10,.0f} events/s   ratio 2p/1p = {one / two:.2f}")
        print(f"1 process, S3 (local moto server): {n / on_s3:>10,.0f} events/s   ratio s3/local = {one / on_s3:.2f}")
        print(f"(on {os.cpu_count()} cores; process start-up included in every run)")
    finally:
        if proc is not None:
            proc.kill()
        broker.stop_embedded(work / "state")


if __name__ == "__main__":
    main()
