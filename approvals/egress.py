"""Where signoff may send an agent's webhook: public addresses only, unless the config says.

A ``callback_url`` is chosen by whoever holds an agent key, and signoff calls it from the
server's own network. Left alone, that lets a key holder make signoff POST to its own API,
a database on localhost, a cloud metadata service or anything on the private network. So:

- at create time, a URL whose host *is* such an address (in any spelling: ``127.1``,
  ``2130706433``, ``0x7f000001``, ``[::ffff:127.0.0.1]``) is refused;
- at send time the host name is resolved by signoff, every address it resolves to is
  checked, the connection goes to a checked address, and the connected socket's peer
  address is checked again before anything is sent, so a name that resolves to a public
  address when asked and a private one when connected (DNS rebinding) gets nowhere;
- redirects are never followed.

Refused: loopback, private (RFC 1918, CGNAT, IPv6 unique-local), link-local (cloud metadata
lives there), multicast, unspecified, reserved and other special-purpose addresses, and the
IPv4 addresses hidden in IPv6 forms (mapped, 6to4, NAT64). ``webhooks.allow`` in the config
lists the networks (CIDR) and host names that may be reached anyway, e.g. a receiver on the
same host or in the same VPC.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_RESPONSE_BYTES = 64 * 1024
"""How much of a receiver's answer is read (its status is what counts)."""

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
LOCAL_NAMES = frozenset({"localhost", "metadata.google.internal", "metadata"})
"""Host names that always mean this machine or a cloud metadata service (and every name
under ``.localhost``, RFC 6761): refused at create time without asking DNS."""


Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Looks a host name up: the addresses it resolves to, as text."""


async def system_resolve(host: str, port: int) -> list[str]:
    """The system resolver's addresses for ``host`` (``OSError`` when there are none)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class EgressRefused(Exception):
    """The address is not one signoff may call; retrying will not change that."""


def ip_literal(host: str) -> IpAddress | None:
    """``host`` as an IP address when it is one in any spelling a resolver accepts, else
    ``None``. IPv4 counts in the forms ``inet_aton`` takes (``127.1``, ``2130706433``,
    ``0x7f.1``, octal), because that is what the system resolver does with them."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if not bare or any(ch not in "0123456789abcdefxABCDEFX." for ch in bare):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except OSError:
        return None


def _address(text: str) -> IpAddress:
    """An address as a resolver or a socket gives it, without an IPv6 zone (``%eth0``)."""
    return ipaddress.ip_address(text.split("%")[0])


def _embedded_ipv4(address: IpAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _kind(address: IpAddress) -> str | None:
    """What makes ``address`` one signoff must not call on its own, or ``None``."""
    inner = _embedded_ipv4(address)
    if inner is not None:
        return _kind(inner) or None
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a special-purpose address"
    return None


class EgressPolicy:
    """Which addresses webhooks may reach: public ones, and what ``allow`` lists.

    ``allow`` entries are networks in CIDR form (``10.1.2.0/24``, ``127.0.0.1/32``,
    ``::1/128``) or host names (``hooks.internal``), compared case-insensitively.
    ``resolve`` looks a host name up (the system resolver by default).
    """

    def __init__(self, allow: Iterable[str] = (), *, resolve: Resolver | None = None) -> None:
        self._resolve = resolve or system_resolve
        self._networks: list[IpNetwork] = []
        self._hosts: set[str] = set()
        for entry in allow:
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._hosts.add(entry.lower().rstrip("."))

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self._hosts

    def address_problem(self, address: IpAddress) -> str | None:
        """Why signoff may not connect to ``address``, or ``None``."""
        if any(address in network for network in self._networks):
            return None
        kind = _kind(address)
        if kind is None:
            return None
        return f"{address} is {kind}; list it under webhooks.allow to call it"

    def reach_problem(self, host: str, address: IpAddress) -> str | None:
        """Why a connection for ``host`` may not go to ``address``, or ``None``."""
        return None if self.host_allowed(host) else self.address_problem(address)

    def url_problem(self, url: str) -> str | None:
        """Why ``url`` may never be called, judged from its text alone (no DNS): its host
        is an address signoff may not call. ``None`` when it may be tried."""
        try:
            host = httpx.URL(url).host
        except httpx.InvalidURL:
            return None  # not a URL at all: callback_url_problem says so
        if self.host_allowed(host):
            return None
        name = host.lower().rstrip(".")
        if name in LOCAL_NAMES or name.endswith(".localhost"):
            return f"callback_url host {host} names this machine or its cloud metadata service"
        address = ip_literal(host)
        problem = None if address is None else self.address_problem(address)
        return None if problem is None else f"callback_url host {problem}"

    async def checked_addresses(self, host: str, port: int) -> list[str]:
        """The addresses ``host`` resolves to, all of them allowed; ``EgressRefused`` when
        any is not (a name that resolves to one forbidden address is not called at all)."""
        literal = ip_literal(host)
        if literal is not None:
            found = [literal]
        else:
            try:
                resolved = await self._resolve(host, port)
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
            found = [_address(address) for address in resolved]
        for address in found:
            problem = self.reach_problem(host, address)
            if problem is not None:
                raise EgressRefused(f"{host} resolves to {problem}")
        return list(dict.fromkeys(str(address) for address in found))


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            # The name is looked up here, not in the connect below: the connect timeout
            # covers the lookup too, as it does in httpcore's own backend.
            async with asyncio.timeout(timeout):
                addresses = await self._policy.checked_addresses(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"looking up {host} took too long") from exc
        failure: Exception | None = None
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            self._check_peer(host, stream)
            return stream
        raise failure or httpcore.ConnectError(f"no address to connect to for {host}")

    def _check_peer(self, host: str, stream: httpcore.AsyncNetworkStream) -> None:
        peer = stream.get_extra_info("server_addr")
        if peer is None:
            sock = stream.get_extra_info("socket")
            peer = sock.getpeername() if sock is not None else None
        if peer is None:
            raise EgressRefused(f"the connection to {host} has no peer address to check")
        problem = self._policy.reach_problem(host, _address(str(peer[0])))
        if problem is not None:
            raise EgressRefused(f"the connection to {host} reached {problem}")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("webhooks are never sent to a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose connections go only where an :class:`EgressPolicy` allows.

    It reads at most :data:`MAX_RESPONSE_BYTES` of each answer and follows no redirects
    (an httpx client follows none unless asked).
    """

    def __init__(self, policy: EgressPolicy, *, verify: Any = True) -> None:
        ssl_context = httpx.create_ssl_context(verify=verify)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            network_backend=_GuardedBackend(policy),
            max_connections=10,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = httpcore.URL(
            scheme=request.url.raw_scheme,
            host=request.url.raw_host,
            port=request.url.port,
            target=request.url.raw_path,
        )
        try:
            async with self._pool.stream(
                request.method,
                url,
                headers=request.headers.raw,
                content=request.stream,  # type: ignore[arg-type]  # an async byte iterable
                extensions=request.extensions,
            ) as answer:
                body = await _read_capped(answer.aiter_stream(), MAX_RESPONSE_BYTES)
        except httpcore.TimeoutException as exc:
            raise httpx.TimeoutException(str(exc), request=request) from exc
        except httpcore.NetworkError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except httpcore.ProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            content=body,
            request=request,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


async def _read_capped(chunks: Any, limit: int) -> bytes:
    kept = bytearray()
    async for chunk in chunks:
        kept += chunk[: limit - len(kept)]
        if len(kept) >= limit:
            break
    return bytes(kept)


def allow_entry_problem(entry: str) -> str | None:
    """Why ``entry`` cannot be a ``webhooks.allow`` entry, or ``None``."""
    try:
        ipaddress.ip_network(entry, strict=False)
        return None
    except ValueError:
        pass
    if not entry or len(entry) > 253 or any(ch.isspace() or ch in "/:@[]" for ch in entry):
        return f"{entry!r} is neither a network in CIDR form nor a host name"
    return None
