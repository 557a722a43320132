"""The demo lake as a new user gets it: the README's quick start run as written, on a private lake and broker.

One per session: the notebook tests read it, the README test goes on from it with the README's
next commands. It runs in a private state dir, so ``telcolake demo`` starts its own embedded
broker there (stopped at the end of the session), with the repository config except two ports
moved to free ones (the operator endpoints of ``telcolake up`` and the sharing server), which
commands quoting those ports get too (:func:`DemoLake.command`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.core.broker import free_port

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SERVICE_PORT, SHARING_PORT = 8760, 8765
SKIP_MARKERS = ("(alternative)", "(long-running)")


@dataclass
class Line:
    """One command of the README: its block (heading above it), text and marker (None: run it in the foreground)."""

    section: str
    text: str
    marker: str | None


def readme_commands(text: str | None = None) -> list[Line]:
    """Every command line of the README's fenced blocks, in order; ``# ... (alternative)`` and
    ``# ... (long-running)`` in a line's comment mark it."""
    text = README.read_text() if text is None else text
    out, section = [], ""
    for m in re.finditer(r"^(#{2,3} [^\n]*)$|^```[a-z]*\n(.*?)^```", text, re.M | re.S):
        if m.group(1):
            section = m.group(1).lstrip("# ").strip()
            continue
        for raw in m.group(2).splitlines():
            line = raw.strip()
            if not line or line.startswith("#") or not re.match(r"(telcolake|just|python3? |curl|python -c)", line):
                continue
            marker = next((k for k in SKIP_MARKERS if k in line.partition("  #")[2]), None)
            out.append(Line(section, line, marker))
    return out


@dataclass
class DemoLake:
    """A lake built by the README's first command, and how to run more commands against it."""

    env: dict[str, str]
    work: Path
    printed: str
    ports: dict[int, int]

    def command(self, line: str) -> str:
        for quoted, port in self.ports.items():
            line = line.replace(str(quoted), str(port))
        return line

    def run(self, line: str, *, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-euo", "pipefail", "-c", self.command(line)], cwd=self.work, env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> DemoLake:
    """The README's first command (installs `just`, runs `just demo`), as written, on a private lake and broker."""
    tmp = tmp_path_factory.mktemp("readme")
    ports = {SERVICE_PORT: free_port(), SHARING_PORT: free_port()}
    config = (REPO / "telcolake.toml").read_text()
    config = config.replace(f"port = {SERVICE_PORT}", f"port = {ports[SERVICE_PORT]}").replace(
        f"127.0.0.1:{SHARING_PORT}", f"127.0.0.1:{ports[SHARING_PORT]}")
    (tmp / "telcolake.toml").write_text(config)
    work = tmp / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELCOLAKE_")}
    env.update(TELCOLAKE_LAKE=str(tmp / "lake"), TELCOLAKE_STATE_DIR=str(tmp / "state"), TELCOLAKE_CONFIG=str(tmp / "telcolake.toml"),
               TELCOLAKE_SECRETS_FILE=str(tmp / "secrets.toml"), COLUMNS="160", JUST_JUSTFILE=str(REPO / "justfile"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    lake = DemoLake(env=env, work=work, printed="", ports=ports)
    first = readme_commands()[0]
    assert "just demo" in first.text, f"the README's first command should run the demo: {first.text}"
    try:
        proc = lake.run(first.text, timeout=1800)
        assert proc.returncode == 0, (proc.stderr or proc.stdout)[-3000:]
        lake.printed = proc.stdout
        yield lake
    finally:
        subprocess.run([sys.executable, "-m", "pipelines.cli", "broker", "stop"], env=env, capture_output=True, timeout=60)
