"""A fake SMTP relay on 127.0.0.1 that the real aiosmtplib talks to (aiosmtpd underneath).

It runs in the test's own event loop (``loop.create_server``, port 0), with STARTTLS or
implicit TLS on a self-signed certificate made here (SAN ``localhost`` and ``127.0.0.1``),
optional AUTH, and faults injected per message (a 4xx or 5xx reply to DATA). Every message
it accepts is parsed with ``email.policy.default`` and kept in order.
"""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import logging
import ssl
import time
import warnings
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USERNAME = "signoff"
PASSWORD = "relay-password"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` and ``127.0.0.1``: (cert, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "relay-cert.pem", directory / "relay-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Received:
    """One accepted message: the envelope and the parsed message."""

    sender: str
    recipients: list[str]
    message: EmailMessage
    tls: bool
    authenticated: bool
    at: float = 0.0
    """When it arrived (``time.monotonic()``)."""


@dataclass
class _Fault:
    code: int
    text: str
    times: int
    to: str | None


@dataclass
class _Handler:
    relay: FakeSmtpRelay

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        relay = self.relay
        fault = next((f for f in relay.faults if f.to is None or f.to in envelope.rcpt_tos), None)
        if fault is not None:
            fault.times -= 1
            if fault.times <= 0:
                relay.faults.remove(fault)
            relay.refused += 1
            return f"{fault.code} {fault.text}"
        tls = session.ssl is not None or (
            server.transport is not None
            and server.transport.get_extra_info("sslcontext") is not None
        )
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        relay.received.append(
            Received(
                sender=envelope.mail_from,
                recipients=list(envelope.rcpt_tos),
                message=parsed,
                tls=tls,
                authenticated=bool(session.authenticated),
                at=time.monotonic(),
            )
        )
        relay.arrived.set()
        return "250 2.0.0 OK queued"


@dataclass
class FakeSmtpRelay:
    """An SMTP relay on 127.0.0.1. ``start()`` binds a free port; ``stop()`` closes it.

    Attributes:
        tls: ``starttls`` (STARTTLS required before AUTH and mail), ``implicit`` (TLS from
            the first byte) or ``none``.
        auth: whether AUTH (PLAIN / LOGIN, :data:`USERNAME` / :data:`PASSWORD`) is required.
    """

    certificate_dir: Path
    tls: Literal["starttls", "implicit", "none"] = "starttls"
    auth: bool = True
    received: list[Received] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    refused: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    ca_file: Path | None = None
    _server: asyncio.Server | None = None

    def _context(self) -> ssl.SSLContext:
        cert, key = make_certificate(self.certificate_dir)
        self.ca_file = cert
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context

    @staticmethod
    def _authenticate(
        server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == USERNAME.encode()
            and auth_data.password == PASSWORD.encode()
        )
        # handled=False: aiosmtpd then answers a failure with 535 itself (with the
        # default, a failed AUTH gets no reply at all and the client waits out its timeout).
        return AuthResult(success=ok, handled=False)

    def _protocol(self, handler: _Handler, context: ssl.SSLContext | None) -> SMTP:
        return SMTP(
            handler,
            hostname="localhost",
            tls_context=context if self.tls == "starttls" else None,
            require_starttls=self.tls == "starttls",
            authenticator=self._authenticate if self.auth else None,
            auth_required=self.auth,
            # With implicit TLS aiosmtpd does not know the socket is encrypted; with
            # STARTTLS it offers AUTH only after the upgrade.
            auth_require_tls=self.tls == "starttls",
        )

    async def start(self) -> None:
        # aiosmtpd logs a deprecation line of its own on every successful AUTH.
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        context = self._context() if self.tls != "none" else None
        handler = _Handler(self)

        def protocol() -> SMTP:
            with warnings.catch_warnings():
                # aiosmtpd cannot see that an implicit-TLS socket is encrypted, so it warns
                # that AUTH is "required while not requiring TLS"; here TLS comes first.
                warnings.filterwarnings(
                    "ignore", message="Requiring AUTH while not requiring TLS", category=UserWarning
                )
                return self._protocol(handler, context)

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            protocol,
            "127.0.0.1",
            0,
            ssl=context if self.tls == "implicit" else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def fail_next(self, code: int, text: str, *, times: int = 1, to: str | None = None) -> None:
        """Answer the next ``times`` messages' DATA (for ``to`` only, if given) with
        ``code text``."""
        self.faults.append(_Fault(code, text, times, to))

    def to(self, address: str) -> list[EmailMessage]:
        """Every accepted message for ``address``, oldest first."""
        return [item.message for item in self.received if address in item.recipients]
