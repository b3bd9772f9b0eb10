"""App tokens for the Bot Connector: the OAuth client-credentials grant, cached until expiry.

The Teams SDK asks for a token before every outgoing call and caches nothing itself when
given a token callable, so :class:`AppTokens` keeps each token until shortly before it
expires and lets one request fetch it while concurrent callers wait for that one.

The app proves who it is with its client secret (``app_password``) or, instead, with a
certificate: a short-lived JWT client assertion signed by the certificate's private key,
as Microsoft Entra's certificate credentials expect (RFC 7523, ``x5t#S256`` naming the
certificate). Tokens come from ``<login_url>/<tenant>/oauth2/v2.0/token``; the endpoint is
configurable so signoff can use a national cloud, or a local token issuer in tests.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

REFRESH_MARGIN = 300.0
"""Seconds before its expiry at which a token is replaced."""
ASSERTION_LIFETIME = 600
"""Seconds a certificate's client assertion is valid."""
TOKEN_TIMEOUT = 20.0
"""Seconds for one token request."""
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class TokenError(Exception):
    """The token endpoint refused the app's credentials or could not be reached.

    Attributes:
        permanent: retrying cannot help (wrong secret, unknown app, expired certificate).
    """

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Certificate:
    """A certificate credential: its private key and the SHA-256 thumbprint naming it."""

    private_key: RSAPrivateKey
    thumbprint_sha256: str

    @classmethod
    def from_pem_file(cls, path: str) -> Certificate:
        """Read a PEM file holding the certificate and its (unencrypted) RSA private key.

        Raises:
            ValueError: the file lacks either part, or the key is not RSA.
        """
        data = Path(path).read_bytes()
        try:
            key = serialization.load_pem_private_key(data, password=None)
            certificate = x509.load_pem_x509_certificate(data)
        except ValueError as exc:
            raise ValueError(
                f"{path}: expected a PEM file with the certificate and its private key ({exc})"
            ) from exc
        if not isinstance(key, RSAPrivateKey):
            raise ValueError(f"{path}: Microsoft Entra certificate credentials need an RSA key")
        digest = certificate.fingerprint(hashes.SHA256())
        return cls(key, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())

    def assertion(self, *, client_id: str, token_url: str) -> str:
        """A client assertion JWT for one token request."""
        now = int(time.time())
        claims = {
            "aud": token_url,
            "iss": client_id,
            "sub": client_id,
            "jti": str(uuid.uuid4()),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        header = {"x5t#S256": self.thumbprint_sha256}
        return jwt.encode(claims, self.private_key, algorithm="PS256", headers=header)


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float


class AppTokens:
    """The app's access tokens, one per (scope, tenant), fetched once and reused.

    Pass an instance as the Teams SDK's ``token`` callable.
    """

    def __init__(
        self,
        *,
        client_id: str,
        login_url: str,
        client_secret: str | None = None,
        certificate: Certificate | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if (client_secret is None) == (certificate is None):
            raise ValueError("give exactly one of client_secret and certificate")
        self._client_id = client_id
        self._login_url = login_url.rstrip("/")
        self._client_secret = client_secret
        self._certificate = certificate
        self._http = http or httpx.AsyncClient(timeout=TOKEN_TIMEOUT)
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def token_url(self, tenant: str) -> str:
        return f"{self._login_url}/{tenant}/oauth2/v2.0/token"

    async def __call__(self, scope: str | list[str], tenant_id: str | None) -> str:
        """A valid token for ``scope`` from ``tenant_id``'s token endpoint."""
        scope_text = " ".join(scope) if isinstance(scope, list) else scope
        key = (scope_text, tenant_id or "botframework.com")
        token = self._tokens.get(key)
        if token is not None and token.expires_at > time.monotonic():
            return token.value
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            token = self._tokens.get(key)
            if token is None or token.expires_at <= time.monotonic():
                token = await self._fetch(*key)
                self._tokens[key] = token
        return token.value

    def forget(self) -> None:
        """Drop every cached token: the Bot Connector refused one (revoked, or the clocks
        disagree), so the next call fetches a fresh one."""
        self._tokens.clear()

    async def _fetch(self, scope: str, tenant: str) -> _Token:
        url = self.token_url(tenant)
        form = {"grant_type": "client_credentials", "client_id": self._client_id, "scope": scope}
        if self._certificate is not None:
            form["client_assertion_type"] = CLIENT_ASSERTION_TYPE
            form["client_assertion"] = self._certificate.assertion(
                client_id=self._client_id, token_url=url
            )
        else:
            assert self._client_secret is not None
            form["client_secret"] = self._client_secret
        started = time.monotonic()
        try:
            response = await self._http.post(url, data=form)
        except httpx.HTTPError as exc:
            raise TokenError(
                f"cannot reach the token endpoint: {type(exc).__name__}", permanent=False
            ) from exc
        body = _json(response)
        if response.status_code >= 500 or response.status_code == 429:
            status = response.status_code
            raise TokenError(f"token endpoint answered HTTP {status}", permanent=False)
        if response.status_code != 200 or not isinstance(body.get("access_token"), str):
            # AADSTS errors (wrong secret, unknown app, wrong tenant) do not heal by waiting.
            error = body.get("error_description") or body.get("error") or response.status_code
            raise TokenError(f"token refused: {str(error)[:300]}", permanent=True)
        lifetime = _seconds(body.get("expires_in"))
        margin = min(REFRESH_MARGIN, lifetime / 2)
        return _Token(body["access_token"], started + max(lifetime - margin, 0.0))

    async def aclose(self) -> None:
        await self._http.aclose()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _seconds(value: object) -> float:
    try:
        return float(str(value))
    except ValueError:
        return 0.0
