"""The worker's SQS client (boto3): queue creation on an embedded endpoint, receive, delete, re-nudge."""

from __future__ import annotations

import logging

import botocore.exceptions

from ledger_common.nudge import decode_nudge
from ledger_common.sqs import SQS_BATCH_MAX, make_sqs_client
from worker.batching import Received, chunks
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)

_MISSING_QUEUE_CODES = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
LONG_POLL_S_MAX = 20  # the longest receive SQS allows: a read may wait that long on top of the timeout


class SqsQueue:
    """One cell's queue. Blocking calls (boto3 is synchronous): the async drain runs them in a thread."""

    def __init__(self, settings: WorkerSettings, client=None) -> None:
        self.settings = settings
        self.client = client or make_sqs_client(settings.sqs_endpoint_url, settings.sqs_region, settings.sqs_timeout_s,
                                                long_poll_s_max=LONG_POLL_S_MAX, connections_max=16)
        self.url = settings.sqs_queue_url

    def ensure(self) -> str:
        """Find the queue; on an SQS-compatible endpoint create it when missing. Returns its URL."""
        name = self.settings.queue_name
        try:
            self.url = self.client.get_queue_url(QueueName=name)["QueueUrl"]
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if not self.settings.sqs_endpoint_url or code not in _MISSING_QUEUE_CODES:
                raise
            self.url = self.client.create_queue(
                QueueName=name, Attributes={"VisibilityTimeout": str(self.settings.visibility_timeout_s)},
            )["QueueUrl"]
            log.info("created SQS queue %s", self.url)
        # The configured URL wins when given (it may name a host the endpoint does not know it by).
        if self.settings.sqs_queue_url:
            self.url = self.settings.sqs_queue_url
        return self.url

    def receive(self, count_max: int, wait_s: int) -> list[Received]:
        response = self.client.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=max(1, min(count_max, SQS_BATCH_MAX)),
            WaitTimeSeconds=wait_s, VisibilityTimeout=self.settings.visibility_timeout_s,
        )
        out = []
        for m in response.get("Messages", []):
            decoded = decode_nudge(m.get("Body", ""))
            out.append(Received(m["MessageId"], m["ReceiptHandle"],
                                decoded[0] if decoded else None, decoded[1] if decoded else None))
        return out

    def delete(self, messages: list[Received]) -> int:
        """Delete messages; returns how many SQS failed to delete (they will simply come back)."""
        failed = 0
        for chunk in chunks(messages, SQS_BATCH_MAX):
            response = self.client.delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "ReceiptHandle": m.receipt} for i, m in enumerate(chunk)],
            )
            failed += len(response.get("Failed", []))
        return failed

    def send(self, bodies: list[str], delay_s: int = 0) -> None:
        for chunk in chunks(bodies, SQS_BATCH_MAX):
            response = self.client.send_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "MessageBody": b, "DelaySeconds": delay_s} for i, b in enumerate(chunk)],
            )
            if response.get("Failed"):
                raise RuntimeError(f"SQS refused {len(response['Failed'])} of {len(chunk)} messages")

    def depth(self) -> int:
        attrs = self.client.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])
