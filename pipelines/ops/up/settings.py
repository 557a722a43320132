"""The ``[service]`` section of telcolake.toml: how `telcolake up` runs its components."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from pipelines.core.config import Settings
from pipelines.core.errors import ConfigError

COMPONENTS = ("ingest", "silver", "streams", "fulfilment", "responders")
DEFAULT_COMPONENTS = ("ingest", "silver", "streams", "fulfilment")


@dataclass(frozen=True)
class ServiceSettings:
    """How `telcolake up` runs.

    Attributes:
        host: the address the HTTP endpoints bind (127.0.0.1: this machine only).
        port: their port (``telcolake up --port`` overrides).
        components: which continuous components run (ingest, silver, streams, fulfilment; and
            responders, the simulated network functions and partners, for demos and tests).
        silver_interval_s: silver is refreshed at most this long after a bronze commit.
        restart_backoff_s: a crashed component restarts after this, doubling per crash in a
            row up to ``restart_backoff_max_s`` (reset once it ran ``healthy_after_s``).
        restart_backoff_max_s: the longest wait before a restart.
        healthy_after_s: a component that ran this long counts as healthy again.
        stop_timeout_s: on SIGTERM a component gets this long to finish its batch, then is killed.
        status_interval_s: how often ``/api/status`` (lag, tables, jobs) is recomputed.
        scheduler: run the scheduled jobs (those with ``under_up = true``) too.
        token: the bearer token every endpoint but ``/health`` needs (empty: none); env
            ``TELCOLAKE_SERVICE_TOKEN`` overrides. Needed when ``host`` is not a loopback address.
    """

    host: str = "127.0.0.1"
    port: int = 8760
    components: tuple[str, ...] = DEFAULT_COMPONENTS
    silver_interval_s: float = 1.0
    restart_backoff_s: float = 1.0
    restart_backoff_max_s: float = 30.0
    healthy_after_s: float = 60.0
    stop_timeout_s: float = 20.0
    status_interval_s: float = 5.0
    scheduler: bool = True
    token: str = ""

    @property
    def loopback(self) -> bool:
        """Whether ``host`` keeps the endpoints on this machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False

    def check_exposure(self) -> None:
        """Refuse to serve on a non-loopback address without a token.

        Raises:
            ConfigError: ``host`` is not loopback and no ``[service] token`` is set.
        """
        if not self.loopback and not self.token:
            raise ConfigError(f"service.host = {self.host!r} serves beyond this machine: set [service] token (or "
                              "TELCOLAKE_SERVICE_TOKEN), at least 16 characters, or bind 127.0.0.1")

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceSettings:
        section, default = settings.section("service"), cls()
        values: dict = {}
        for key in ("silver_interval_s", "restart_backoff_s", "restart_backoff_max_s", "healthy_after_s",
                    "stop_timeout_s", "status_interval_s"):
            value = section.get(key, getattr(default, key))
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"service.{key} = {value!r}: expected a number of seconds > 0")
            values[key] = float(value)
        if values["stop_timeout_s"] > 25:
            raise ConfigError(f"service.stop_timeout_s = {values['stop_timeout_s']!r}: at most 25 (up exits within 30 s of SIGTERM)")
        host = section.get("host", default.host)
        if not isinstance(host, str) or not host:
            raise ConfigError(f"service.host = {host!r}: expected an address such as '127.0.0.1'")
        port = section.get("port", default.port)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"service.port = {port!r}: expected a TCP port 1-65535")
        components = section.get("components", list(default.components))
        if not isinstance(components, list) or any(c not in COMPONENTS for c in components):
            raise ConfigError(f"service.components = {components!r}: expected a list of {', '.join(COMPONENTS)}")
        scheduler = section.get("scheduler", default.scheduler)
        if not isinstance(scheduler, bool):
            raise ConfigError(f"service.scheduler = {scheduler!r}: expected true or false")
        token = settings.values("service")["token"]
        if os.environ.get("TELCOLAKE_SERVICE_TOKEN"):
            import re

            from pipelines.core.keys import TOKEN

            token = os.environ["TELCOLAKE_SERVICE_TOKEN"]
            if not re.fullmatch(TOKEN, token):  # the value is a secret: not repeated in the message
                raise ConfigError("TELCOLAKE_SERVICE_TOKEN: expected 16-512 letters, digits or . _ ~ + / = -")
        return cls(host=host, port=port, components=tuple(components), scheduler=scheduler, token=token, **values)
