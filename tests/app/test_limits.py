"""Token buckets for the agent API's rate limits."""

from bot.limits import RateLimit, RateLimiter


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
