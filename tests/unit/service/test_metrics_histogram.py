"""The cell's bisecting histogram (cell/service/metrics._Histogram) counts as prometheus_client's own does."""

from prometheus_client import CollectorRegistry, Histogram

from cell.service.metrics import _Histogram

BUCKETS = (0.001, 0.002, 0.005, 0.01, 1, 5)
VALUES = [0, 0.0005, 0.001, 0.0010001, 0.002, 0.004, 0.005, 0.01, 0.5, 1, 1.0000001, 5, 6, 1e9]


def _samples(kind) -> list:
    registry = CollectorRegistry()
    histogram = kind("h", "a histogram", buckets=BUCKETS, registry=registry)
    for value in VALUES:
        histogram.observe(value)
    return [(s.name, s.labels, s.value) for m in registry.collect() for s in m.samples if not s.name.endswith("_created")]


def test_every_value_lands_in_the_bucket_prometheus_client_puts_it_in_bounds_included():
    assert _samples(_Histogram) == _samples(Histogram)
    bucket = {s[1]["le"]: s[2] for s in _samples(_Histogram) if s[0] == "h_bucket"}
    assert (bucket["0.001"], bucket["1.0"], bucket["+Inf"]) == (3, 10, len(VALUES))  # le is inclusive
