"""Partner bearer tokens: stored hashed with an expiry in ops/share_tokens; create, revoke, verify."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from pipelines.core.config import Settings
from pipelines.core.errors import ConfigError
from pipelines.core.lake import Lake, utcnow
from pipelines.sharing.registry import get_partner, sharing_settings

TOKENS = "ops/share_tokens"
TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([("token_id", pa.string()), ("partner_id", pa.string()), ("token_sha256", pa.string()),
                    ("created_at", TS), ("expires_at", TS), ("revoked_at", TS)])


@dataclass(frozen=True)
class Issued:
    """A new token; ``token`` is shown once and never stored."""

    partner_id: str
    token_id: str
    token: str
    expires_at: datetime

    def profile(self, endpoint: str) -> dict:
        """The Delta Sharing profile file (shareCredentialsVersion 1) for this token."""
        return {"shareCredentialsVersion": 1, "endpoint": endpoint, "bearerToken": self.token,
                "expirationTime": self.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(settings: Settings, partner_id: str, *, days: float | None = None, now: datetime | None = None) -> Issued:
    """Issue a token for ``partner_id`` valid ``days`` (default [sharing] token_days); only its hash is kept."""
    get_partner(settings, partner_id)
    if days is not None and days <= 0:
        raise ConfigError(f"--days {days}: expected a number of days greater than 0")
    now = now or utcnow()
    token_id = secrets.token_hex(6)
    token = f"tlk_{token_id}_{secrets.token_urlsafe(32)}"
    expires = now + timedelta(days=days if days is not None else sharing_settings(settings).token_days)
    row = {"token_id": token_id, "partner_id": partner_id, "token_sha256": _hash(token), "created_at": now, "expires_at": expires, "revoked_at": None}
    Lake.from_settings(settings).write(TOKENS, pa.Table.from_pylist([row], schema=SCHEMA))
    return Issued(partner_id, token_id, token, expires)


def revoke_tokens(settings: Settings, partner_id: str, *, token_id: str | None = None) -> int:
    """Revoke every live token of ``partner_id`` (or just ``token_id``); returns how many."""
    lake = Lake.from_settings(settings)
    if not lake.exists(TOKENS):
        return 0
    rows = lake.read(TOKENS).to_pylist()
    now, n = utcnow(), 0
    for r in rows:
        if r["partner_id"] == partner_id and r["revoked_at"] is None and (token_id is None or r["token_id"] == token_id):
            r["revoked_at"], n = now, n + 1
    if n:
        lake.write(TOKENS, pa.Table.from_pylist(rows, schema=SCHEMA), mode="overwrite")
    return n


class TokenStore:
    """Verifies bearer tokens against ops/share_tokens, re-reading the table when it changes."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._version: int | None = None
        self._rows: dict[str, dict] = {}

    def _refresh(self) -> None:
        version = self.lake.version(TOKENS)
        if version != self._version:
            self._rows = {} if version is None else {r["token_id"]: r for r in self.lake.read(TOKENS, version=version).to_pylist()}
            self._version = version

    def partner_for(self, token: str | None, now: datetime | None = None) -> str | None:
        """The partner a token belongs to, or None when missing, unknown, wrong, expired or revoked."""
        if not token or not token.startswith("tlk_") or token.count("_") < 2:
            return None
        self._refresh()
        row = self._rows.get(token.split("_", 2)[1])
        if row is None or not hmac.compare_digest(row["token_sha256"], _hash(token)):
            return None
        if row["revoked_at"] is not None or row["expires_at"] <= (now or utcnow()):
            return None
        return row["partner_id"]
