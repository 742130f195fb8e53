"""The cell's own Prometheus metrics (request latency per route comes from Litestar's plugin)."""

import bisect
import functools

from prometheus_client import Counter, Histogram


class _Histogram(Histogram):
    """prometheus_client's Histogram, its observe a bisection of the buckets: prometheus_client's checks the metric may
    be observed and walks every bucket below the value (the values and samples are its own; prometheus_client 0.x
    internals: _sum, _buckets, _upper_bounds, requirements.lock). For unlabelled histograms."""

    def observe(self, value: float, exemplar=None) -> None:  # seconds or a count, never money
        if exemplar:
            super().observe(value, exemplar)
            return
        self._sum.inc(value)
        self._buckets[bisect.bisect_left(self._upper_bounds, value)].inc(1)  # the first bound >= value


POSTINGS = Counter("ledger_postings_total", "Postings and transitions by outcome", ["outcome"])
POSTING_SECONDS = _Histogram("ledger_posting_seconds", "Time to post a ledger transaction, validation to commit",
                            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5))
SYNC_LOCK_WAIT_SECONDS = _Histogram(
    "ledger_sync_lock_wait_seconds", "Time a sync posting or transition waited for its accounts' balance-row locks",
    buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2))
POSTING_GROUP_SIZE = _Histogram(
    "ledger_posting_group_size", "Postings per group statement (cell.service.posting_groups: async postings, or "
    "postings that apply accounts now; a posting sent alone is not counted)", buckets=(2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128))
POSTING_GROUPS_SPLIT = Counter(
    "ledger_posting_groups_split_total", "Group statements whose transaction failed, their postings then re-run "
    "one per transaction")

# An outcome's child of POSTINGS, its value looked up once (labels() costs a lock and its label checks on every call,
# the child's inc its own checks; the outcomes are a fixed set: the posting outcomes and the rejection codes).
_posting_outcome = functools.lru_cache(maxsize=None)(lambda outcome: POSTINGS.labels(outcome)._value)


def count_posting(outcome: str) -> None:
    _posting_outcome(outcome).inc(1)
