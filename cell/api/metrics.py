"""Request metrics per route: the series Litestar's Prometheus plugin exports (same names and labels), for a
fraction of its cost per request.

The plugin builds a Request, two label dicts and a functools.wraps'd send on every request and looks each
series' child up by its label values four times; here a route's series are looked up once and kept. In one
process they are plain numbers made into samples when scraped (a collector on the default registry): a
prometheus_client child costs a lock and several calls per update. With prometheus_client's multiprocess mode
(CELL_PROCESSES > 1, cell/__main__.py) they are prometheus_client's own metrics, whose values every process shares
through its files. The keys are bounded: this middleware runs only for matched routes (a fixed set of path
templates), with the status codes the API answers.
"""

from __future__ import annotations

import bisect
import time

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString
from prometheus_client.values import MutexValue, ValueClass

LABELS = ("method", "path", "status_code", "app_name", "cell")
EXCLUDED = frozenset({"/metrics", "/healthz", "/readyz"})
APP_NAME = "cell"
MULTIPROCESS = ValueClass is not MutexValue  # prometheus_client's own choice (PROMETHEUS_MULTIPROC_DIR)
BOUNDS = Histogram.DEFAULT_BUCKETS  # the durations' buckets, +Inf last
REQUESTS_DOC = ("ledger_requests_total", "Total requests")
ERRORS_DOC = ("ledger_requests_error_total", "Total errors in requests")
DURATION_DOC = ("ledger_request_duration_seconds", "Request duration, in seconds")
IN_PROGRESS_DOC = ("ledger_requests_in_progress", "Total requests currently in progress")


class _Running:
    """Requests of one route in progress, in one process."""
    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def inc(self) -> None:
        self.count += 1

    def dec(self) -> None:
        self.count -= 1


class _Answers:
    """Requests of one route answered with one status, in one process: their count (by duration bucket) and the
    sum of their durations. The error counter of a 5xx series is its count."""
    __slots__ = ("created", "seconds", "buckets")

    def __init__(self) -> None:
        self.created = time.time()
        self.seconds = 0.0
        self.buckets = [0] * len(BOUNDS)  # not cumulative: the first bound >= the duration counts it

    def observe(self, seconds: float) -> None:
        self.seconds += seconds
        self.buckets[bisect.bisect_left(BOUNDS, seconds)] += 1


class _PlainSeries:
    """The series as plain numbers, made into the samples prometheus_client's metrics would give when scraped."""

    def __init__(self) -> None:
        self._running: dict[tuple[str, str, str], _Running] = {}
        self._answers: dict[tuple[str, str, int, str], _Answers] = {}

    def running(self, method: str, path: str, cell: str) -> _Running:
        return self._running.setdefault((method, path, cell), _Running())

    def answers(self, method: str, path: str, status: int, cell: str) -> _Answers:
        return self._answers.setdefault((method, path, status, cell), _Answers())

    def collect(self):
        with_created = getattr(prometheus_metrics, "_use_created", True)
        requests = CounterMetricFamily(*REQUESTS_DOC, labels=LABELS)
        errors = CounterMetricFamily(*ERRORS_DOC, labels=LABELS)
        duration = HistogramMetricFamily(*DURATION_DOC, labels=LABELS)
        for (method, path, status, cell), answers in list(self._answers.items()):
            labels = (method, path, str(status), APP_NAME, cell)
            counts = answers.buckets[:]
            total, cumulative = 0.0, []
            for bound, count in zip(BOUNDS, counts):
                total += count
                cumulative.append((floatToGoString(bound), total))
            created = answers.created if with_created else None
            requests.add_metric(labels, total, created=created)
            if status >= 500:
                errors.add_metric(labels, total, created=created)
            duration.add_metric(labels, cumulative, answers.seconds)
            if created is not None:
                duration.samples.append(Sample(duration.name + "_created", dict(zip(LABELS, labels)), created))
        in_progress = GaugeMetricFamily(*IN_PROGRESS_DOC, labels=LABELS)
        for (method, path, cell), running in list(self._running.items()):
            # The status label is 200 whatever the answer (as in Litestar's plugin).
            in_progress.add_metric((method, path, "200", APP_NAME, cell), float(running.count))
        return [requests, errors, duration, in_progress]


class _SharedAnswers:
    """_Answers as prometheus_client's children (multiprocess mode)."""
    __slots__ = ("requests", "duration", "errors")

    def __init__(self, requests, duration, errors) -> None:
        self.requests, self.duration, self.errors = requests, duration, errors

    def observe(self, seconds: float) -> None:
        self.requests.inc()
        self.duration.observe(seconds)
        if self.errors is not None:
            self.errors.inc()


class _SharedSeries:
    """The series as prometheus_client's metrics (multiprocess mode)."""

    def __init__(self, registry=REGISTRY) -> None:
        self.requests = Counter(*REQUESTS_DOC, LABELS, registry=registry)
        self.errors = Counter(*ERRORS_DOC, LABELS, registry=registry)
        self.duration = Histogram(*DURATION_DOC, LABELS, registry=registry)
        self.in_progress = Gauge(*IN_PROGRESS_DOC, LABELS, multiprocess_mode="livesum", registry=registry)

    def running(self, method: str, path: str, cell: str):
        return self.in_progress.labels(method, path, "200", APP_NAME, cell)

    def answers(self, method: str, path: str, status: int, cell: str) -> _SharedAnswers:
        labels = (method, path, str(status), APP_NAME, cell)
        return _SharedAnswers(self.requests.labels(*labels), self.duration.labels(*labels),
                              self.errors.labels(*labels) if status >= 500 else None)


if MULTIPROCESS:
    SERIES = _SharedSeries()
else:
    SERIES = _PlainSeries()
    REGISTRY.register(SERIES)


class RequestMetrics:
    """ASGI middleware (inside Litestar's routing, so `path_template` is known)."""

    def __init__(self, app, cell: str) -> None:
        self.app = app
        self.cell = cell
        self._running: dict[tuple[str, str], object] = {}
        self._answers: dict[tuple[str, str, int], object] = {}

    async def __call__(self, scope, receive, send) -> None:
        template = scope.get("path_template")
        if scope["type"] != "http" or template is None or template in EXCLUDED:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        running = self.running(method, template)
        status = 500  # unless an answer starts
        started = time.perf_counter()
        elapsed = 0.0

        async def send_timed(message) -> None:
            nonlocal status, elapsed
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                elapsed = time.perf_counter() - started
            await send(message)

        running.inc()
        try:
            await self.app(scope, receive, send_timed)
        finally:
            running.dec()
            self.answered(method, template, status, elapsed or time.perf_counter() - started)

    def running(self, method: str, template: str):
        """The in-progress gauge of a route (inc / dec): what __call__ keeps up for every request it measures."""
        running = self._running.get((method, template))
        if running is None:
            running = self._running[(method, template)] = SERIES.running(method, template, self.cell)
        return running

    def answered(self, method: str, template: str, status: int, seconds: float) -> None:
        """A request of a route answered with `status`, `seconds` after it began (until its body was sent)."""
        key = (method, template, status)
        answers = self._answers.get(key)
        if answers is None:
            answers = self._answers[key] = SERIES.answers(method, template, status, self.cell)
        answers.observe(seconds)
