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
from pipelines.core.schema import Choice, Int, Strings, Table, Text, check_table, key_path, shown

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
        endpoint: the server's public Delta Sharing endpoint: written into profile files, and the
            only base of the signed file URLs the server hands out.
        max_body_bytes: a request body larger than this is refused (413) before it is read.
        api_docs: serve the API docs (``/docs``, ``/redoc``, ``/openapi.json``), unauthenticated.
    """

    registry: Path
    secrets_file: Path
    k_anonymity: int = 10
    min_row_ratio: float = 0.5
    max_row_ratio: float = 10.0
    file_url_ttl_s: int = 900
    token_days: int = 90
    endpoint: str = "http://127.0.0.1:8765/delta-sharing"
    max_body_bytes: int = 64 * 1024
    api_docs: bool = False


def _resolve(path: str) -> Path:
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p.resolve()
    return (REPO_ROOT / p).resolve()


def sharing_settings(settings: Settings) -> SharingSettings:
    """Checked ``[sharing]`` settings (each bad value is a one-line ConfigError)."""
    values = settings.values("sharing")
    registry, secrets_file = values.pop("registry"), values.pop("secrets_file")
    registry = os.environ.get("TELCOLAKE_PARTNERS") or registry
    secrets_file = os.environ.get("TELCOLAKE_SECRETS_FILE") or secrets_file
    values["endpoint"] = values["endpoint"].rstrip("/")
    return SharingSettings(registry=_resolve(registry), secrets_file=Path(secrets_file).expanduser().resolve(), **values)


PARTNER = Table(keys={
    "name": Text(max_len=200, what="a display name of at most 200 characters"),
    "kind": Choice(*KINDS, default=None),
    "tables": Strings(max_items=16),
    "plmns": Strings(max_items=64),
    "ott_partner_id": Text(pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", what="the partner's id in usage records, e.g. \"ott-streamflix\""),
    "k_anonymity": Int(2, 1_000_000),
}, defaults=False)
REGISTRY = Table(keys={"partners": Table(extra=PARTNER, extra_key=r".*", extra_name="partner", defaults=False)}, defaults=False)


def _partner(pid: str, d: dict[str, Any], k_default: int) -> Partner:
    w = f"partners.{key_path(pid)}"
    if not NAME.match(pid):
        raise ConfigError(f"{w}: partner ids are lower-case letters, digits, '-' and '_' (got {shown(pid)})")
    kind = d.get("kind")
    if kind is None:
        raise ConfigError(f"{w}.kind: missing; expected one of {', '.join(KINDS)}")
    tables = d.get("tables", TABLES_FOR[kind])
    if any(t not in TABLES_FOR[kind] for t in tables):
        raise ConfigError(f"{w}.tables = {shown(list(tables))}: a {kind} partner may receive {', '.join(TABLES_FOR[kind])}")
    plmns = d.get("plmns", ())
    if kind == "roaming" and (not plmns or not all(PLMN.match(p) for p in plmns)):
        raise ConfigError(f"{w}.plmns = {shown(list(plmns))}: expected a list of MCC-MNC codes such as [\"208-01\"]")
    ott = d.get("ott_partner_id")
    if kind == "ott" and not ott:
        raise ConfigError(f"{w}.ott_partner_id = {ott!r}: expected the partner's id in usage records, e.g. \"ott-streamflix\"")
    return Partner(partner_id=pid, name=d.get("name", pid), kind=kind, tables=tuple(dict.fromkeys(tables)),
                   plmns=tuple(plmns) if kind == "roaming" else (), ott_partner_id=ott if kind == "ott" else None,
                   k_anonymity=d.get("k_anonymity", k_default))


def load_partners(settings: Settings) -> dict[str, Partner]:
    """Every partner in the registry, by id.

    Raises:
        ConfigError: the registry is missing or invalid (the message names the key).
    """
    ss = sharing_settings(settings)
    if not ss.registry.is_file():
        raise ConfigError(f"sharing.registry: partner registry {ss.registry} does not exist")
    try:
        doc = tomllib.loads(ss.registry.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{ss.registry}: not a readable TOML file: {str(exc).splitlines()[0]}") from None
    entries = check_table(REGISTRY, doc).get("partners")
    if not entries:
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
        doc = tomllib.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable TOML file: {str(exc).splitlines()[0]}") from None
    entries = doc.get("partners", {})
    if not isinstance(entries, dict) or not all(isinstance(v, str) for v in entries.values()):
        raise ConfigError(f"{path}: expected a [partners] table of <id> = \"<secret>\" strings")
    return dict(entries)


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
