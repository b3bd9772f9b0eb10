"""Token buckets for the agent API's rate limits."""

from bot.limits import FailureGuard, RateLimit, RateLimiter


class Ticker:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_steady_rate_with_retry_after():
    clock = Ticker()
    limiter = RateLimiter(RateLimit(rate=1, burst=3), RateLimit(100, 100), monotonic=clock)
    assert [limiter.check("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.check("a") == 1
    clock.now += 1.0
    assert limiter.check("a") == 0
    assert limiter.check("b") == 0  # every agent has its own bucket


def test_global_refusal_does_not_spend_the_agents_budget():
    clock = Ticker()
    limiter = RateLimiter(RateLimit(rate=1, burst=2), RateLimit(rate=1, burst=1), monotonic=clock)
    assert limiter.check("a") == 0
    assert limiter.check("b") == 1  # refused by the global bucket
    clock.now += 1.0
    # b's own bucket is still full: two calls pass once the global bucket allows them.
    assert limiter.check("b") == 0
    clock.now += 1.0
    assert limiter.check("b") == 0


def test_failure_guard_blocks_an_address_after_its_burst_of_bad_keys():
    clock = Ticker()
    guard = FailureGuard(RateLimit(rate=2, burst=3), monotonic=clock)
    for _ in range(3):
        assert guard.retry_after("10.0.0.1") == 0
        guard.failed("10.0.0.1")
    assert guard.retry_after("10.0.0.1") == 1
    assert guard.retry_after("10.0.0.2") == 0  # other addresses are unaffected
    clock.now += 0.5
    assert guard.retry_after("10.0.0.1") == 0


async def test_bad_keys_are_refused_before_lookup_once_an_address_keeps_failing(api):
    bad = {"Authorization": "Bearer so_nope_nope"}
    statuses = [(await api.client.get("/v1/approvals", headers=bad)).status_code for _ in range(30)]
    blocked = await api.client.get("/v1/approvals", headers=api.auth())

    assert statuses == [401] * 30
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "too_many_failed_attempts"
    assert int(blocked.headers["Retry-After"]) >= 1
