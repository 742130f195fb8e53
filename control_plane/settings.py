"""The control plane's typed settings, read from the environment once (CONTROL_PLANE_ prefix)."""

from __future__ import annotations

import os

import msgspec

from cell.store.sweep import UNAPPLIED_AGE_MAX_S_DEFAULT
from cell.ledger.webhooks import WEBHOOK_RETRY_WINDOW_S_DEFAULT
from ledger_common.outbound import OutboundPolicy
from ledger_common.settings import load_from_env


class ControlPlaneSettings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = ""
    # Route changes are published here; empty means "do not publish" (routers still reload periodically).
    redis_url: str = ""
    routes_channel: str = "ledger:routes"
    # Who the operator audit log names as the actor.
    actor: str = ""
    tenants_per_page_max: int = 1000
    cell_check_timeout_s: float = 5.0
    # `ledgerctl verify` fails when an effect stayed unapplied longer than this: the cells' sweeper bound
    # (CELL_/WORKER_SWEEP_AFTER_S + 2 * the sweep interval, defaults 5 + 2 * 2). 0 skips the check.
    unapplied_age_max_s: float = UNAPPLIED_AGE_MAX_S_DEFAULT
    # `ledgerctl verify` flags a tenant still `creating` (a create that failed half-way) this long after its catalog
    # row was written; a create takes seconds. 0 skips the check.
    tenant_creating_age_max_s: float = 600.0
    # `ledgerctl verify` flags a running move that no mover has updated for this long (its mover died or hangs: the
    # tenant stays `moving` until `moves resume` or `moves abort`), and `moves list` shows it stalled. A live mover
    # updates it after every batch and step, and every few seconds through a long verification. 0 skips the check.
    move_update_age_max_s: float = 60.0
    # Tenant moves (control_plane/moves.py): rows per COPY batch, a pause between batches (throttle), the
    # catch-up rounds repeat until one copies at most move_catch_up_rows_max rows, or at least 3/4 of the round
    # before (not converging: the tenant writes about as fast as a round copies), or after so many rounds,
    # how long the freeze waits for writes in flight, and the copy rate the plan's estimate assumes. The freeze
    # begins only after a round its final round can follow within move_freeze_s_max at that rate (the tenant's
    # writes during one round); rounds go on until then, for at most move_catch_up_s_max, then the move stops,
    # nothing frozen (control_plane.moves.fits_freeze). A final catch-up past move_freeze_s_limit is given up: the
    # tenant unfrozen, the rounds resumed (three times, then the move stops).
    move_batch_rows: int = 5000
    move_batch_pause_s: float = 0.0
    move_catch_up_rows_max: int = 500
    move_catch_up_rounds_max: int = 20
    move_freeze_lock_timeout_s: float = 5.0
    move_rows_per_s_estimate: float = 20000.0
    move_freeze_s_max: float = 1.0
    move_catch_up_s_max: float = 600.0
    move_freeze_s_limit: float = 5.0
    # The freeze's lease: the source cell ends a freeze this long after it began (the tenant's next write there, or its
    # sweeper, makes it active again), unless the mover has committed it to its flip before; a mover that died in the
    # freeze leaves its tenant frozen no longer. It must exceed what a freeze may take, move_freeze_s_limit (its final
    # catch-up) plus its verification (of what the final round copied, which fits_freeze bounds by move_freeze_s_max),
    # or moves give up freezes that were about to finish: refused at startup.
    move_freeze_s_lease: float = 10.0
    # The least a move waits for its source's key caches: a cell process serves a tenant's requests for its
    # CELL_API_KEY_CACHE_TTL_S on a key it checked. A move marks the tenant leaving on its source (its keys no longer
    # remembered there) and freezes it only once those remembered before have expired, so that a router still routing
    # the tenant to the source (it has not learnt of the flip yet) is answered 421 there, never from the left books,
    # once the target takes writes. It waits the larger of this and the largest TTL the source's processes recorded
    # as they started (cell migration 0231; this alone covers processes started before it). The wait comes before
    # the freeze, the tenant writing meanwhile.
    cells_api_key_cache_ttl_s: float = 0.5
    # An operator's change of a tenant in its cell (keys, webhook endpoints) takes the tenant's write fence: while a
    # move has the tenant frozen it is tried again for this long (the freeze lasts move_freeze_s_limit at most, then
    # the verify and the flip), then refused, retryable (tenant_frozen, exit 4).
    tenant_frozen_wait_s: float = 15.0
    # `ledgerctl audit verify` checks each tenant's audit chain against the anchors in the catalog and, when set,
    # in this write-once directory (the cells' workers publish there: WORKER_AUDIT_ANCHOR_DIR).
    audit_anchor_dir: str = ""
    # `ledgerctl webhooks add` refuses the URLs the cells' API and workers refuse (ledger_common/outbound.py);
    # these relax it as CELL_/WORKER_WEBHOOK_ALLOW_* do (a development stack, a private network).
    webhook_allow_http_loopback: bool = False
    webhook_allow_private_addresses: bool = False
    webhook_retry_window_s: float = WEBHOOK_RETRY_WINDOW_S_DEFAULT
    webhook_endpoints_max: int = 32

    @property
    def outbound(self) -> OutboundPolicy:
        return OutboundPolicy(allow_http_loopback=self.webhook_allow_http_loopback,
                              allow_private_addresses=self.webhook_allow_private_addresses)
    # The fault drill: a mover waits before this step (e.g. "flip"), its progress saved, until it is killed or the
    # move aborted; `moves resume` then goes on past it. Empty: never.
    move_pause_before: str = ""

    def __post_init__(self) -> None:
        if not (self.move_rows_per_s_estimate > 0 and self.move_freeze_s_max > 0 and self.move_catch_up_s_max >= 0
                and self.move_freeze_s_limit > 0 and self.move_freeze_s_lease > 0):
            raise ValueError("move_rows_per_s_estimate, move_freeze_s_max, move_freeze_s_limit and move_freeze_s_lease "
                             "must be > 0, "
                             "move_catch_up_s_max >= 0")
        if self.move_freeze_s_lease <= self.move_freeze_s_limit + self.move_freeze_s_max:
            raise ValueError(f"move_freeze_s_lease ({self.move_freeze_s_lease:g}) must be above move_freeze_s_limit + "
                             f"move_freeze_s_max ({self.move_freeze_s_limit:g} + {self.move_freeze_s_max:g}), what a "
                             "freeze may take (its final catch-up, then its verification): a shorter lease ends every "
                             "freeze that was about to finish")


def load_settings(environ: dict[str, str] | None = None, **overrides) -> ControlPlaneSettings:
    """Read CONTROL_PLANE_<FIELD> for every field; explicit (non-None) overrides win."""
    env = os.environ if environ is None else environ
    actor = env.get("USER") or env.get("LOGNAME") or "unknown"
    return load_from_env(ControlPlaneSettings, ("CONTROL_PLANE_",), env, defaults={"actor": actor},
                         **{k: v for k, v in overrides.items() if v is not None})
