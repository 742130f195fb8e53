"""The SQS client (boto3) for real SQS or an SQS-compatible endpoint (moto), and SQS's own limits."""

from __future__ import annotations

from prometheus_client import Counter

SQS_CALLS = Counter("ledger_sqs_calls_total", "SQS API calls made, by operation: each costs CPU here and in the "
                    "endpoint, and AWS bills per call", ["operation"])

SQS_BATCH_MAX = 10  # entries per SendMessageBatch / DeleteMessageBatch / ReceiveMessage (an SQS limit)


def make_sqs_client(endpoint_url: str, region: str, timeout_s: float = 2.0, *, long_poll_s_max: int = 0,
                    connections_max: int = 8):
    """Short timeouts and one retry; a receive may wait `long_poll_s_max` on top of `timeout_s`."""
    # Imported here: boto3 takes a while to import and only hybrid-mode cells and workers need it.
    import boto3
    import botocore.config

    config = botocore.config.Config(connect_timeout=timeout_s, read_timeout=timeout_s + long_poll_s_max,
                                    retries={"max_attempts": 2, "mode": "standard"},
                                    max_pool_connections=connections_max)
    kwargs: dict = {"region_name": region, "config": config}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
        if boto3.session.Session().get_credentials() is None:
            # An SQS-compatible endpoint (moto) accepts any credentials; real SQS uses boto3's usual chain.
            kwargs.update(aws_access_key_id="ledger", aws_secret_access_key="ledger")
    client = boto3.session.Session().client("sqs", **kwargs)
    client.meta.events.register("after-call.sqs", _count_call)
    return client


def _count_call(model, **_kwargs) -> None:
    SQS_CALLS.labels(model.name).inc()
