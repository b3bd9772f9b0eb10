"""App tokens for the Bot Connector: the certificate's client assertion, and what the token
endpoint's refusals mean for the outbox."""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from adapters.teams.tokens import AppTokens, Certificate, TokenError
from tests.fakes.teams import FakeTeams

CLIENT_ID = "5160f00d-7ea5-4c3b-9d2e-000000000001"
SCOPE = "https://api.botframework.com/.default"


def pem_file(tmp_path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> Path:
    """A PEM file with a self-signed certificate for ``key`` and the key itself."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signoff")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "teams.pem"
    path.write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_the_assertion_is_signed_by_the_certificate_and_names_it(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    path = pem_file(tmp_path, rsa_key)
    certificate = Certificate.from_pem_file(str(path))
    token_url = "https://login.example.test/tenant/oauth2/v2.0/token"

    assertion = certificate.assertion(client_id=CLIENT_ID, token_url=token_url)

    claims = jwt.decode(assertion, rsa_key.public_key(), algorithms=["PS256"], audience=token_url)
    assert (claims["iss"], claims["sub"]) == (CLIENT_ID, CLIENT_ID)
    assert claims["exp"] > claims["iat"]
    der = x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(serialization.Encoding.DER)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    thumbprint = base64.urlsafe_b64encode(digest.finalize()).rstrip(b"=").decode()
    assert jwt.get_unverified_header(assertion)["x5t#S256"] == thumbprint
    # Each assertion is for one request.
    again = certificate.assertion(client_id=CLIENT_ID, token_url=token_url)
    assert jwt.decode(again, options={"verify_signature": False})["jti"] != claims["jti"]


def test_a_certificate_file_without_its_rsa_key_is_refused_by_name(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    path = pem_file(tmp_path, rsa_key)
    certificate_only = tmp_path / "certificate-only.pem"
    certificate_only.write_bytes(path.read_bytes().split(b"-----BEGIN PRIVATE KEY-----")[0])
    with pytest.raises(ValueError, match=r"certificate-only\.pem"):
        Certificate.from_pem_file(str(certificate_only))
    elliptic = pem_file(tmp_path, ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ValueError, match="RSA"):
        Certificate.from_pem_file(str(elliptic))


@pytest.fixture
def fake() -> Iterator[FakeTeams]:
    with FakeTeams() as fake:
        yield fake


def tokens_for(fake: FakeTeams, secret: str | None = None) -> AppTokens:
    return AppTokens(
        client_id=fake.app_id,
        login_url=fake.login_endpoint,
        client_secret=secret or fake.app_password,
    )


async def test_a_wrong_secret_is_a_refusal_waiting_cannot_heal(fake: FakeTeams) -> None:
    tokens = tokens_for(fake, secret="not-the-secret")
    try:
        with pytest.raises(TokenError) as refused:
            await tokens(SCOPE, fake.tenant_id)
        assert refused.value.permanent
        assert "token refused" in str(refused.value)
    finally:
        await tokens.aclose()


async def test_an_unavailable_token_endpoint_is_worth_retrying(fake: FakeTeams) -> None:
    tokens = tokens_for(fake)
    try:
        fake.fail_next("token", 503)
        with pytest.raises(TokenError) as unavailable:
            await tokens(SCOPE, fake.tenant_id)
        assert not unavailable.value.permanent
        assert await tokens(SCOPE, fake.tenant_id)  # the next try gets one
        assert await tokens(SCOPE, fake.tenant_id)  # and keeps it
        assert fake.token_requests == 2
        tokens.forget()
        await tokens(SCOPE, fake.tenant_id)
        assert fake.token_requests == 3
    finally:
        await tokens.aclose()
