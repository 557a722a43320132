"""Signed, expiring file URLs: the URL itself carries who may read which file until when."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class FileGrant:
    """What a signed URL allows: ``partner`` reads ``path`` (relative to ``table``) until ``expires``."""

    partner: str
    table: str
    path: str
    expires: int


class UrlSigner:
    """HMAC-SHA256 signs file grants; the key is ``TELCOLAKE_SHARING_URL_KEY`` or random per server.

    A token is ``<payload>.<signature>`` (both base64url); any change to either, or a use after
    ``expires``, makes :meth:`verify` return None.
    """

    def __init__(self, key: bytes | None = None) -> None:
        env = os.environ.get("TELCOLAKE_SHARING_URL_KEY")
        self.key = key or (env.encode() if env else secrets.token_bytes(32))

    def sign(self, grant: FileGrant) -> str:
        payload = _b64(json.dumps({"p": grant.partner, "t": grant.table, "f": grant.path, "e": grant.expires},
                                  separators=(",", ":"), sort_keys=True).encode())
        sig = _b64(hmac.new(self.key, payload.encode(), hashlib.sha256).digest())
        return f"{payload}.{sig}"

    def verify(self, token: str, now: float | None = None) -> FileGrant | None:
        """The grant a token carries, or None when it is malformed, forged, changed or expired."""
        if not isinstance(token, str) or len(token) > 8192 or not token.isascii():
            return None
        payload, _, sig = token.partition(".")
        expected = _b64(hmac.new(self.key, payload.encode(), hashlib.sha256).digest())
        if not sig or not hmac.compare_digest(sig.encode(), expected.encode()):
            return None
        try:
            d = json.loads(_unb64(payload))
            grant = FileGrant(partner=str(d["p"]), table=str(d["t"]), path=str(d["f"]), expires=int(d["e"]))
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
            return None
        return grant if grant.expires > (now if now is not None else time.time()) else None
