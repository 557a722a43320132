"""The README is true: its commands run as written, in the order shown, on the demo's private lake and broker.

The first command (the quick start: `just demo`) built the lake (``demo_lake`` in conftest.py).
Every later command of a fenced block runs with bash in a scratch directory. A command whose
comment says ``(alternative)`` is another way to do what a neighbour does and is not run; one
that says ``(long-running)`` (a service: `telcolake up`, `ingest`, `serve-shares`) is started
in the background and the commands after it in its block run against it (retried for up to a
minute while it starts), then it gets SIGTERM and must exit 0. The only changes to a command are
the two ports the private config moved (8760, 8765 -> free ports).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.e2e.conftest import readme_commands

pytestmark = pytest.mark.slow


def test_the_readme_marks_what_it_does_not_run_and_its_first_command_is_the_demo():
    lines = readme_commands()
    assert "just demo" in lines[0].text and lines[0].marker is None
    marked = {line.text.split("  #")[0].strip(): line.marker for line in lines if line.marker}
    assert marked.get("telcolake up") == "(long-running)" and marked.get("just test") == "(long-running)"
    assert marked.get("telcolake simulate --to kafka") == "(alternative)"  # the simulate above already filled the topics
    assert readme_commands("## A\n```\ntelcolake ingest   # run it (long-running)\ntelcolake x  # y\n```\n")[0].marker == "(long-running)"


def test_every_readme_command_runs_in_order(demo_lake):
    lines = readme_commands()[1:]
    ran, skipped = [], []
    services: list[tuple[str, subprocess.Popen]] = []
    section = None

    def stop_services() -> None:
        while services:
            text, proc = services.pop()
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                code = proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail(f"`{text}` did not exit within 120 s of SIGTERM")
            out = proc.stdout.read() if proc.stdout else ""
            assert code in (0, -signal.SIGTERM, 128 + signal.SIGTERM) or code == 0, f"`{text}` exited {code} on SIGTERM: {out[-2000:]}"

    try:
        for line in lines:
            if line.section != section:
                stop_services()
                section = line.section
            if line.marker == "(alternative)" or (line.marker == "(long-running)" and line.text.startswith("just test")):
                skipped.append(line.text)
                continue
            if line.marker == "(long-running)":
                proc = subprocess.Popen(["bash", "-c", f"exec {demo_lake.command(line.text.split('  #')[0])}"], cwd=demo_lake.work,
                                        env=demo_lake.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
                services.append((line.text, proc))
                time.sleep(2)
                assert proc.poll() is None, f"`{line.text}` stopped at once: {proc.stdout.read()[-2000:]}"
                ran.append(line.text)
                continue
            deadline = time.monotonic() + (60 if services else 0)
            while True:
                proc = demo_lake.run(line.text)
                if proc.returncode == 0 or time.monotonic() >= deadline:
                    break
                time.sleep(2)
            assert proc.returncode == 0, f"[{line.section}] `{line.text}` exited {proc.returncode}:\n{(proc.stderr or proc.stdout)[-2500:]}"
            ran.append(line.text)
        stop_services()
    finally:
        for _, proc in services:
            os.killpg(proc.pid, signal.SIGKILL)
    assert len(ran) > 20, ran
    print(f"ran {len(ran) + 1} README commands (the first: the demo), skipped {len(skipped)}: {skipped}")
