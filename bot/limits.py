"""Rate limits for the agent API: token buckets per agent and for the whole process, and a
guard that slows down clients presenting bad API keys before their keys cost a lookup."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    """``rate`` requests per second on average, with bursts of up to ``burst``."""

    rate: float
    burst: int


class TokenBucket:
    def __init__(self, limit: RateLimit, now: float) -> None:
        self.limit = limit
        self._limit = limit
        self._tokens = float(limit.burst)
        self._updated = now

    def take(self, now: float) -> float:
        """Take one token. Returns 0 when allowed, else the seconds until one is available."""
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self._limit.burst, self._tokens + elapsed * self._limit.rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self._limit.rate

    def peek(self, now: float) -> float:
        """Like ``take`` without taking: 0 when a token is available, else the wait."""
        elapsed = max(0.0, now - self._updated)
        tokens = min(self._limit.burst, self._tokens + elapsed * self._limit.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self._limit.rate

    def refund(self) -> None:
        """Give back a token taken for a call that did not go ahead."""
        self._tokens = min(self._limit.burst, self._tokens + 1)


class RateLimiter:
    """Per-agent buckets plus one global bucket; a call must get a token from both.

    ``per_agent`` is every agent's limit unless ``agents`` names one of its own (the
    config's ``agents.NAME.rate``). :meth:`configure` changes the limits while running (a
    config reload); a bucket whose limit changed starts again full.
    """

    def __init__(
        self,
        per_agent: RateLimit,
        overall: RateLimit,
        *,
        agents: Mapping[str, RateLimit] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        max_agents: int = 10_000,
    ) -> None:
        self._per_agent = per_agent
        self._agent_limits = dict(agents or {})
        self._monotonic = monotonic
        self._overall_limit = overall
        self._overall = TokenBucket(overall, monotonic())
        self._agents: dict[str, TokenBucket] = {}
        self._max_agents = max_agents
        self.follows_config = False
        """Whether a config reload gives this limiter new limits (see ``bot.app``)."""

    def configure(
        self, per_agent: RateLimit, overall: RateLimit, agents: Mapping[str, RateLimit]
    ) -> None:
        """Use new limits from now on."""
        self._per_agent = per_agent
        self._agent_limits = dict(agents)
        if overall != self._overall_limit:
            self._overall_limit = overall
            self._overall = TokenBucket(overall, self._monotonic())
        self._agents = {
            agent: bucket
            for agent, bucket in self._agents.items()
            if bucket.limit == self.limit_of(agent)
        }

    def limit_of(self, agent: str) -> RateLimit:
        """The limit ``agent``'s calls are held to."""
        return self._agent_limits.get(agent, self._per_agent)

    def check(self, agent: str) -> int:
        """0 when the call may go ahead, else whole seconds to put in ``Retry-After``."""
        now = self._monotonic()
        bucket = self._agents.get(agent)
        if bucket is None:
            if len(self._agents) >= self._max_agents:
                self._agents.clear()  # bounded memory; a reset only ever grants a burst
            bucket = self._agents[agent] = TokenBucket(self.limit_of(agent), now)
        wait = bucket.take(now)
        if wait:
            return max(1, math.ceil(wait))
        wait = self._overall.take(now)
        if wait:
            bucket.refund()  # refused overall: the agent's own budget is not spent
            return max(1, math.ceil(wait))
        return 0

    def refund(self, agent: str) -> None:
        """Give back the tokens of a call that was let through here but refused later
        (the process was too busy): a refused call spends no budget."""
        bucket = self._agents.get(agent)
        if bucket is not None:
            bucket.refund()
        self._overall.refund()


class FailureGuard:
    """Counts failed authentications per client address; too many, and the address is told to
    wait before its next attempt is even looked up.

    While an address waits, every request from it is refused, one with a good key too:
    answering good keys would let guessing go on, each answer telling a hit from a miss.
    Successful calls cost nothing here, so agents behind one proxy address are affected
    only while one of them keeps sending bad keys, and only until the address's wait ends.
    """

    def __init__(
        self,
        limit: RateLimit,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self._limit = limit
        self._monotonic = monotonic
        self._clients: dict[str, TokenBucket] = {}
        self._max_clients = max_clients

    def retry_after(self, client: str) -> int:
        """0 if ``client`` may try, else whole seconds until it may."""
        bucket = self._clients.get(client)
        if bucket is None:
            return 0
        wait = bucket.peek(self._monotonic())
        return max(1, math.ceil(wait)) if wait else 0

    def failed(self, client: str) -> None:
        now = self._monotonic()
        bucket = self._clients.get(client)
        if bucket is None:
            if len(self._clients) >= self._max_clients:
                self._clients.clear()  # bounded memory; a reset only ever grants a burst
            bucket = self._clients[client] = TokenBucket(self._limit, now)
        bucket.take(now)


def rate_limit(per_minute: int, burst: int) -> RateLimit:
    """A limit written as calls a minute and a burst (as the config writes it)."""
    return RateLimit(rate=per_minute / 60, burst=burst)
