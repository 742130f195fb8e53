"""The router's pure parts: the token bucket's spending, refill and debt, and the relay of a cell's head lines
(router/upstream.py's relay_head), remembered or not."""

from __future__ import annotations

from router import upstream
from router.routes import RateLimiter, TokenBucket
from router.upstream import relay_head


def test_a_bucket_spends_refills_at_its_rate_and_tells_the_wait():
    bucket = TokenBucket(rate=10.0, burst=2.0, now=0.0)
    assert bucket.take(0.0, 10.0, 2.0) == 0.0
    assert bucket.take(0.0, 10.0, 2.0) == 0.0
    assert bucket.take(0.0, 10.0, 2.0) == 0.1  # empty: one token is back in a tenth of a second
    assert bucket.take(0.05, 10.0, 2.0, take=False) == 0.05  # a look spends nothing
    assert bucket.take(0.1, 10.0, 2.0) == 0.0
    assert bucket.take(100.0, 10.0, 2.0) == 0.0 and bucket.tokens == 1.0  # never over the burst


def test_a_late_charge_goes_into_debt_down_to_minus_the_burst_and_a_new_rate_applies_at_once():
    bucket = TokenBucket(rate=1.0, burst=2.0, now=0.0)
    for _ in range(10):
        bucket.charge(0.0, 1.0, 2.0)
    assert bucket.tokens == -2.0
    assert bucket.take(0.0, 1.0, 2.0) == 3.0  # three seconds to climb back to one token
    bucket = TokenBucket(rate=1.0, burst=5.0, now=0.0)
    assert bucket.take(0.0, 1.0, 1.0, take=False) == 0.0 and bucket.tokens == 1.0  # clamped to the new burst


def test_the_limiter_passes_everything_at_rate_0_and_keeps_its_buckets_bounded():
    limiter = RateLimiter(buckets_max=2)
    assert all(limiter.wait_s("t", 0, 0, 0.0) == 0.0 for _ in range(100))
    for key in ("a", "b", "c"):
        limiter.charge(key, 1.0, 1.0, 0.0)
    assert list(limiter.buckets) == ["b", "c"]


def test_plain_head_lines_are_relayed_as_they_came_and_others_reframed_whatever_is_remembered():
    upstream._PLAIN_HEADS.clear()
    plain = b"Content-Type: application/json\r\nContent-Length: 2\r\n"
    chunked = b"Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\nX-Kept: yes\r\n"
    twice = b"Content-Length: 2\r\nContent-Length: 2\r\n"
    for _ in range(2):  # the second time from what was remembered
        assert relay_head(200, plain, b"{}", False) == plain
        assert relay_head(200, chunked, b"ok!!!", False) == b"content-type: text/plain\r\nx-kept: yes\r\ncontent-length: 5\r\n"
        assert relay_head(200, twice, b"ok", False) == b"content-length: 2\r\n"
        assert relay_head(200, b"Connection: close\r\nContent-Length: 10\r\n", b"", True) == b"content-length: 10\r\n"
        assert relay_head(204, plain, b"", False) == b"content-type: application/json\r\n"  # RFC 9110 8.6: none
        assert relay_head(204, b"X-A: 1\r\n", b"", False) == b"x-a: 1\r\n"
        assert relay_head(304, b"X-A: 1\r\n", b"", False) == b"x-a: 1\r\n"  # not 0: the 200's is the cell's to say
        assert relay_head(304, plain, b"", False) == plain


def test_the_remembered_heads_are_bounded():
    upstream._PLAIN_HEADS.clear()
    for i in range(upstream._PLAIN_HEADS_MAX + 10):
        lines = b"X-N: %d\r\nContent-Length: 0\r\n" % i
        assert relay_head(200, lines, b"", False) == lines
    assert len(upstream._PLAIN_HEADS) <= upstream._PLAIN_HEADS_MAX


def test_a_request_to_a_cell_is_encoded_alike_with_or_without_the_connections_memo():
    pool = upstream.UpstreamPool("http://127.0.0.1:9/prefix", connections_max=1, connect_timeout_s=1, timeout_s=1,
                                 idle_s_max=1, body_bytes_max=10)
    memo = [None, b""]
    alice = [(b"authorization", b"Basic YQ=="), (b"x-forwarded-for", b"10.0.0.1")]
    bob = [(b"authorization", b"Basic Yg=="), (b"x-forwarded-for", b"10.0.0.1")]
    asked = [(b"GET", b"/a?b=1", alice, b""), (b"POST", b"/t", list(alice), b"{}"), (b"POST", b"/t", bob, b""),
             (b"DELETE", b"/x", bob, b""), (b"GET", b"/a", [], b"")]
    with_memo = [pool._encode(*request, memo) for request in asked]
    assert with_memo == [pool._encode(*request) for request in asked]
    assert with_memo[0] == (b"GET /prefix/a?b=1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\nauthorization: Basic YQ==\r\n"
                            b"x-forwarded-for: 10.0.0.1\r\n\r\n")
    assert with_memo[1].endswith(b"x-forwarded-for: 10.0.0.1\r\ncontent-length: 2\r\n\r\n{}")
    assert b"authorization: Basic Yg==\r\n" in with_memo[2] and b"content-length: 0\r\n" in with_memo[2]
    assert b"content-length" not in with_memo[3] and with_memo[4].endswith(b"host: 127.0.0.1:9\r\n\r\n")
