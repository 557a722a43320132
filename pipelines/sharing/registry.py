"""The partner registry (partners.toml), the [sharing] settings and per-partner secrets."""

from __future__ import annotations

import os
import re
import secrets as pysecrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.core.config import REPO_ROOT, Settings
from pipelines.core.errors import ConfigError

KINDS = ("roaming", "ott", "location")
TABLES_FOR = {
    "roaming": ("roaming_settlement", "roaming_records"),
    "ott": ("ott_report", "ott_subscribers"),
    "location": ("location_footfall",),
}
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PLMN = re.compile(r"^\d{3}-\d{2,3}$")
SECRET_ENV = "TELCOLAKE_PARTNER_SECRET_"


@dataclass(frozen=True)
class Partner:
    """One partner: what it is, what it receives, and the share it reads.

    Attributes:
        partner_id: registry key; also its share name and its folder under ``shares/``.
        name: display name.
        kind: roaming, ott or location.
        plmns: (roaming) MCC-MNC codes of the partner's networks.
        ott_partner_id: (ott) its id in usage records and ``ott_activated`` events.
        tables: share table names (``sql/partners/<table>.sql``).
        k_anonymity: (location) minimum distinct subscribers per published bucket.
    """

    partner_id: str
    name: str
    kind: str
    tables: tuple[str, ...]
    plmns: tuple[str, ...] = ()
    ott_partner_id: str | None = None
    k_anonymity: int = 10

    def share_table(self, table: str) -> str:
        """Lake name of one of its share tables: ``shares/<partner>/<table>``."""
        return f"shares/{self.partner_id}/{table}"

    def staging_table(self, table: str) -> str:
        """Lake name where new content waits for the quality gate: ``staging/shares/<partner>/<table>``."""
        return f"staging/shares/{self.partner_id}/{table}"

    @property
    def secret_env(self) -> str:
        return SECRET_ENV + re.sub(r"[^A-Z0-9]", "_", self.partner_id.upper())


@dataclass(frozen=True)
class SharingSettings:
    """``[sharing]`` in telcolake.toml.

    Attributes:
        registry: the partner registry file (env ``TELCOLAKE_PARTNERS``).
        secrets_file: git-ignored TOML with ``[partners] <id> = "<secret>"`` (env ``TELCOLAKE_SECRETS_FILE``).
        k_anonymity: default minimum distinct subscribers per location bucket.
        min_row_ratio, max_row_ratio: a new share version's rows / the previous version's must be in this band.
        file_url_ttl_s: lifetime of the signed file URLs the server hands out.
        token_days: default lifetime of a partner bearer token.
        endpoint: the server's public Delta Sharing endpoint written into profile files.
    """

    registry: Path
    secrets_file: Path
    k_anonymity: int = 10
    min_row_ratio: float = 0.5
    max_row_ratio: float = 10.0
    file_url_ttl_s: int = 900
    token_days: int = 90
    endpoint: str = "http://127.0.0.1:8765/delta-sharing"


def _resolve(path: str) -> Path:
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p.resolve()
    return (REPO_ROOT / p).resolve()


def sharing_settings(settings: Settings) -> SharingSettings:
    """Validated ``[sharing]`` settings (each bad value is a one-line ConfigError)."""
    s = settings.section("sharing")
    out: dict[str, Any] = {}
    for key, kind, default in (("k_anonymity", int, 10), ("file_url_ttl_s", int, 900), ("token_days", int, 90),
                               ("min_row_ratio", (int, float), 0.5), ("max_row_ratio", (int, float), 10.0)):
        value = s.get(key, default)
        if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
            raise ConfigError(f"sharing.{key} = {value!r}: expected a number greater than 0")
        out[key] = value
    if out["k_anonymity"] < 2:
        raise ConfigError(f"sharing.k_anonymity = {out['k_anonymity']}: expected at least 2")
    if out["min_row_ratio"] > 1 or out["max_row_ratio"] < 1:
        raise ConfigError("sharing.min_row_ratio/max_row_ratio: expected min_row_ratio <= 1 <= max_row_ratio")
    registry = os.environ.get("TELCOLAKE_PARTNERS") or str(s.get("registry", "partners.toml"))
    secrets_file = os.environ.get("TELCOLAKE_SECRETS_FILE") or str(s.get("secrets_file", "secrets.toml"))
    endpoint = str(s.get("endpoint", "http://127.0.0.1:8765/delta-sharing")).rstrip("/")
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"sharing.endpoint = {endpoint!r}: expected an http(s):// URL ending in the /delta-sharing prefix")
    return SharingSettings(registry=_resolve(registry), secrets_file=Path(secrets_file).expanduser().resolve(), endpoint=endpoint, **out)


def _partner(pid: str, d: dict[str, Any], k_default: int) -> Partner:
    w = f"partners.{pid}"
    if not NAME.match(pid):
        raise ConfigError(f"{w}: partner ids are lower-case letters, digits, '-' and '_' (got {pid!r})")
    kind = d.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{w}.kind = {kind!r}: expected one of {', '.join(KINDS)}")
    tables = d.get("tables", list(TABLES_FOR[kind]))
    if not isinstance(tables, list) or not tables or any(t not in TABLES_FOR[kind] for t in tables):
        raise ConfigError(f"{w}.tables = {tables!r}: a {kind} partner may receive {', '.join(TABLES_FOR[kind])}")
    plmns = d.get("plmns", [])
    if kind == "roaming" and (not isinstance(plmns, list) or not plmns or not all(isinstance(p, str) and PLMN.match(p) for p in plmns)):
        raise ConfigError(f"{w}.plmns = {plmns!r}: expected a list of MCC-MNC codes such as [\"208-01\"]")
    ott = d.get("ott_partner_id")
    if kind == "ott" and (not isinstance(ott, str) or not ott):
        raise ConfigError(f"{w}.ott_partner_id = {ott!r}: expected the partner's id in usage records, e.g. \"ott-streamflix\"")
    k = d.get("k_anonymity", k_default)
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(f"{w}.k_anonymity = {k!r}: expected an integer of at least 2")
    return Partner(partner_id=pid, name=str(d.get("name", pid)), kind=kind, tables=tuple(tables),
                   plmns=tuple(plmns) if kind == "roaming" else (), ott_partner_id=ott if kind == "ott" else None, k_anonymity=k)


def load_partners(settings: Settings) -> dict[str, Partner]:
    """Every partner in the registry, by id.

    Raises:
        ConfigError: the registry is missing or invalid (the message names the key).
    """
    ss = sharing_settings(settings)
    if not ss.registry.is_file():
        raise ConfigError(f"sharing.registry: partner registry {ss.registry} does not exist")
    try:
        doc = tomllib.loads(ss.registry.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{ss.registry}: not valid TOML: {exc}") from None
    entries = doc.get("partners")
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"{ss.registry}: expected at least one [partners.<id>] table")
    return {pid: _partner(pid, d, ss.k_anonymity) for pid, d in sorted(entries.items())}


def get_partner(settings: Settings, partner_id: str) -> Partner:
    partners = load_partners(settings)
    if partner_id not in partners:
        raise ConfigError(f"partner {partner_id!r} is not in the registry; known: {', '.join(partners)}")
    return partners[partner_id]


def _secrets_doc(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return {str(k): str(v) for k, v in doc.get("partners", {}).items()}


def partner_secret(settings: Settings, partner: Partner) -> bytes:
    """The partner's pseudonymisation secret: its environment variable, else the secrets file.

    Raises:
        ConfigError: neither has it (the message says how to set one).
    """
    value = os.environ.get(partner.secret_env)
    if not value:
        value = _secrets_doc(sharing_settings(settings).secrets_file).get(partner.partner_id)
    if not value or len(value) < 16:
        raise ConfigError(
            f"partner {partner.partner_id}: no pseudonymisation secret (at least 16 characters); set {partner.secret_env} "
            f"or run `telcolake partners secrets init` to write {sharing_settings(settings).secrets_file}"
        )
    return value.encode()


def init_secrets(settings: Settings) -> tuple[Path, list[str]]:
    """Write random secrets for partners that have none into the secrets file (never replaces one).

    Returns:
        The file and the partner ids that got a new secret.
    """
    path = sharing_settings(settings).secrets_file
    have = _secrets_doc(path)
    added = [pid for pid in load_partners(settings) if pid not in have]
    for pid in added:
        have[pid] = pysecrets.token_hex(32)
    if added:
        lines = ["# Partner pseudonymisation secrets: generated by `telcolake partners secrets init`.",
                 "# Never commit this file (it is in .gitignore). Losing a secret changes that partner's ids.",
                 "[partners]"] + [f'"{pid}" = "{secret}"' for pid, secret in sorted(have.items())]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
    return path, added
