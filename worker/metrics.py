"""The worker's Prometheus metrics: apply lag (commit -> applied), batch sizes, applied/swept/skipped counts, audit
sealing (links written, anchors published), bulk requests (resources, failed attempts, requests given up)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Lag is measured from the effect's insertion, inside the posting transaction, a few ms before its commit.
APPLY_LAG = Histogram(
    "ledger_apply_lag_seconds", "Time from a balance effect's posting to its application",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
BATCH_MESSAGES = Histogram(
    "ledger_drain_batch_messages", "SQS messages per drained batch",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
BATCH_ACCOUNTS = Histogram(
    "ledger_drain_batch_accounts", "Distinct accounts per drained batch",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
)
EFFECTS_APPLIED = Counter("ledger_effects_applied_total", "Balance effects applied by the worker", ["by"])
ACCOUNTS_SKIPPED = Counter("ledger_drain_accounts_skipped_total", "Accounts skipped because another holder had them locked")
MESSAGES_DELETED = Counter("ledger_drain_messages_deleted_total", "SQS messages deleted after their accounts were applied")
MESSAGES_UNDECODABLE = Counter("ledger_drain_messages_undecodable_total", "SQS messages that were not nudges")
ERRORS = Counter("ledger_worker_errors_total", "Failures inside worker tasks (the task retries later)", ["task"])
VERIFY_VIOLATIONS = Gauge("ledger_verify_violations", "Invariant violations found by the last verifier run")
WEBHOOK_ATTEMPTS = Counter("ledger_webhook_attempts_total", "Webhook delivery attempts by outcome "
                           "(succeeded, retrying, failed: retries exhausted)", ["outcome"])
BULK_RESOURCES = Counter("ledger_bulk_resources_total", "Bulk request resources processed by result", ["status"])
BULK_ATTEMPTS_FAILED = Counter("ledger_bulk_attempts_failed_total", "Bulk request processing attempts that failed "
                               "(an error that is no resource's refusal: retried when the claim's lease ends)")
BULK_REQUESTS_GIVEN_UP = Counter("ledger_bulk_requests_given_up_total", "Bulk requests ended after bulk_attempts_max "
                                 "attempts (their resources not applied failed with bulk_attempts_exhausted)")
AUDIT_LINKS = Counter("ledger_audit_links_total", "Audit-chain links written by this worker's sealer")
AUDIT_ANCHORS = Counter("ledger_audit_anchors_total", "Chain heads this worker published as anchors")
