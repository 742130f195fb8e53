"""The operator's control plane against a model: random sequences of `ledgerctl` commands over three real cells, with
a real router in front, compared after every step with what the model says an operator and a client see.

Commands: tenants create (on a named cell, an unknown or draining one, or placed by the control plane on the
least-loaded active cell; ids of 63 characters and case twins of live ids; with books: a key and a marker ledger written
through the router), a deleted tenant's id created again, a duplicate id, invalid ids; keys create / revoke (a live
key, one revoked already, an unknown id, another tenant's); tenants delete (refused while the tenant holds data, a
discarded ledger included, or has moves on record); tenants move (to another cell, the same one, an unknown or
draining one); cells drain (each tenant to the least-loaded active cell as its move starts; refused when no other
active cell could take them) and undrain; moves purge / abort / resume of finished moves; tenants rate-limit (valid
and out-of-range values); webhooks add; a marker ledger discarded through the router; unknown tenants, cells and
moves named everywhere, junk credentials sent to the router. A refusal exits 1 with its stable code and changes
nothing, its audit log included.

After every step: `cells list` (states, tenants per cell), `tenants list` (cell, state, epoch, rate limit; paged, and
per cell), `tenants show` (its state on its cell, live keys), `keys list`, `moves list`, `webhooks list` and the audit
log's actions per subject equal the model's; THROUGH THE ROUTER every live key of every live tenant reaches its own
books (exactly its marker ledger, another tenant's is 404), every revoked key (within the cells' key cache TTL of its
revocation) and every key of a deleted tenant is 401 problem+json (waited for, with a deadline, as the router learns
of route changes by pub/sub or its periodic reload: each example draws whether ledgerctl publishes and whether the
router subscribes), and no request is answered 5xx. At the end of each example: the design's invariants on every
cell database (cell/store/verify.py), `ledgerctl verify` and `ledgerctl audit verify` of every live tenant.

Each example has a control plane (catalog) and a router of its own, in front of the same three cells: it starts from
three active cells and no tenant (`ledgerctl verify --cell` would name the tenants earlier examples left there as
rows its catalog does not know, so the cells' databases are checked directly). CATALOG_MODEL_EXAMPLES /
CATALOG_MODEL_STEPS make a longer soak (with --timeout=0: pytest-timeout's 300 s bounds the whole test).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from cell.store.verify import verify as verify_cell
from cli_rig import CellProcess, Ledgerctl, ServerProcess
from control_plane.devstack import free_port
from test_ledgerctl import new_id

EXAMPLES = int(os.environ.get("CATALOG_MODEL_EXAMPLES", "6"))
STEPS = int(os.environ.get("CATALOG_MODEL_STEPS", "10"))
CELLS = ("cm-1", "cm-2", "cm-3")
UNKNOWN_CELL = "cm-nowhere"
UNKNOWN_TENANT = "cm-nobody"
RELOAD_S = 2.0  # the router's periodic reload (the fallback when a pub/sub message is lost)
ROUTE_WAIT_S = 2 * RELOAD_S + 8  # the longest a route change may take to reach the router, with a margin for load
# A revoked key is refused within the cells' key cache TTL (CELL_API_KEY_CACHE_TTL_S, 0.5 s in cli_rig's cells) of
# `keys revoke` returning; the rest is a margin for a loaded machine.
REVOKE_WAIT_S = 0.5 + 2.5
WEBHOOK_URL = "https://93.184.216.34/hooks"  # a public address: accepted without a resolver


@pytest.fixture(scope="module")
def model_cells(make_database):
    suffix = uuid.uuid4().hex[:6]
    cells = [CellProcess(name, make_database(f"cm_cell_{i}_{suffix}", migrate_cell=False))
             for i, name in enumerate(CELLS, 1)]
    try:
        for cell in cells:
            cell.wait_ready()
        yield {c.name: c for c in cells}
    finally:
        for cell in cells:
            cell.stop()


class Router(ServerProcess):
    """`python -m router` on the example's catalog, learning route changes by pub/sub and a periodic reload; failed
    authentication not limited (the model asks for 401s on purpose)."""

    def __init__(self, cp_url: str, redis_url: str) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "ROUTER_CONTROL_PLANE_DATABASE_URL": cp_url, "ROUTER_REDIS_URL": redis_url,
               "ROUTER_PORT": str(port), "ROUTER_METRICS_PORT": "0", "ROUTER_RELOAD_INTERVAL_S": str(RELOAD_S),
               "ROUTER_AUTH_FAILURES_PER_S_MAX": "100000", "ROUTER_AUTH_FAILURE_BURST_MAX": "100000"}
        self.proc = subprocess.Popen([sys.executable, "-m", "router"], env=env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_for("/startupz", "router", 30)


# ---- the model ---------------------------------------------------------------------------------------------------

@dataclass
class Key:
    id: str
    secret: str
    revoked: bool = False


@dataclass
class Tenant:
    id: str
    cell: str
    epoch: int = 1
    keys: list[Key] = field(default_factory=list)
    marker: str | None = None  # its marker ledger's id (written through the router)
    discarded: bool = False  # its marker discarded (DELETE): still the tenant's data, in no list, 404 by id
    webhooks: int = 0
    rate: tuple[int | None, int | None] = (None, None)  # (rate_limit_per_s, rate_burst): None, the router's default

    def live_keys(self) -> list[Key]:
        return [k for k in self.keys if not k.revoked]


@dataclass
class Model:
    cells: dict[str, str] = field(default_factory=lambda: dict.fromkeys(CELLS, "active"))
    tenants: dict[str, Tenant] = field(default_factory=dict)
    gone: dict[str, list[str]] = field(default_factory=dict)  # a deleted tenant's id -> the secrets it had
    moves: list[tuple[str, str, str]] = field(default_factory=list)  # (tenant, source, target), all done
    move_ids: list[str] = field(default_factory=list)  # moves[i]'s id
    # subject (tenant:ID, cell:NAME) -> the actions the audit log records of it, oldest first
    audit: dict[str, list[str]] = field(default_factory=lambda: {f"cell:{c}": ["cells.add"] for c in CELLS})

    def audited(self, subject: str, *actions: str) -> None:
        self.audit.setdefault(subject, []).extend(actions)

    def loads(self) -> dict[str, int]:
        return {c: sum(1 for t in self.tenants.values() if t.cell == c) for c in self.cells}

    def least_loaded(self, but: str | None = None) -> str | None:
        loads = self.loads()
        active = [c for c, s in self.cells.items() if s == "active" and c != but]
        return min(active, key=lambda c: (loads[c], c)) if active else None

    def has_moves(self, tenant_id: str) -> bool:
        return any(m[0] == tenant_id for m in self.moves)


def _problem(response: httpx.Response) -> dict:
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    return response.json()


class Bench:
    """One example: its own catalog with the three cells, its own router, the model."""

    def __init__(self, make_database, redis_url: str, cells: dict[str, CellProcess], publish: bool,
                 subscribe: bool) -> None:
        """`publish`: ledgerctl publishes route changes on Redis; `subscribe`: the router listens (else its periodic
        reload alone brings them)."""
        self.cells = cells
        self.cp_url = make_database(f"cp_cm_{uuid.uuid4().hex[:8]}", migrate_cell=False)
        self.ctl = Ledgerctl({"CONTROL_PLANE_DATABASE_URL": self.cp_url,
                              "CONTROL_PLANE_REDIS_URL": redis_url if publish else "",
                              "CONTROL_PLANE_ACTOR": "catalog-model"})
        self.ctl("migrate")
        for cell in cells.values():
            self.ctl("cells", "add", cell.name, "--api-url", cell.url, "--database-url", cell.database_url)
        self.router = Router(self.cp_url, redis_url if subscribe else "")
        self.http = httpx.Client(base_url=self.router.url, timeout=10)
        self.model = Model()

    def close(self) -> None:
        self.http.close()
        self.router.stop()

    # ---- helpers ----

    def refused(self, code: str, *args: str) -> dict:
        problem = self.ctl.json(*args, expect=1)
        assert problem["code"] == code, (args, problem)
        event(f"refused: {args[0]} {args[1]} {code}")
        return problem

    def call(self, method: str, path: str, auth: tuple[str, str], **kw) -> httpx.Response:
        r = self.http.request(method, path, auth=auth, **kw)
        assert r.status_code < 500, f"{method} {path} as {auth[0]}: {r.status_code} {r.text}"
        return r

    def until(self, check, what: str, wait_s: float = ROUTE_WAIT_S) -> None:
        """check() -> (done, what was seen), until done, for at most wait_s."""
        deadline = time.monotonic() + wait_s
        while True:
            done, seen = check()
            if done:
                return
            assert time.monotonic() < deadline, f"after {wait_s} s, {what}: {seen}"
            time.sleep(0.05)

    def tenant(self, index: int) -> str:
        ids = sorted(self.model.tenants)
        return ids[index % len(ids)] if ids else UNKNOWN_TENANT

    @staticmethod
    def cell(index: int | None) -> str | None:
        return None if index is None else (CELLS + (UNKNOWN_CELL,))[index % (len(CELLS) + 1)]

    # ---- steps ----

    def create(self, cell_index: int | None, books: bool, tenant_id: str | None = None, style: int = 0) -> None:
        """`style`: the new id's shape: cm-<hex>, the longest an id may be (63 characters), or a live tenant's id in
        other letter case (another tenant: ids are case-sensitive)."""
        m, cell = self.model, self.cell(cell_index)
        if tenant_id is None:
            tenant_id = new_id("cm")
            if style == 1:
                tenant_id = ("Cm_" + uuid.uuid4().hex * 2)[:62] + "."
            elif style == 2 and m.tenants:
                tenant_id = sorted(m.tenants)[0].swapcase()
        args = ("tenants", "create", tenant_id) + (("--cell", cell) if cell else ())
        if tenant_id in m.tenants:
            self.refused("duplicate_tenant", *args)
            return
        if cell is not None and cell not in m.cells:
            self.refused("unknown_cell", *args)
            return
        if cell is not None and m.cells[cell] != "active":
            self.refused("cell_not_active", *args)
            return
        expected = cell or m.least_loaded()
        if expected is None:
            self.refused("no_active_cell", *args)
            return
        created = self.ctl.json(*args)
        assert (created["id"], created["cell"], created["state"], created["epoch"]) == (tenant_id, expected, "active",
                                                                                         1), created
        m.tenants[tenant_id] = Tenant(tenant_id, expected)
        m.audited(f"tenant:{tenant_id}", "tenants.create")
        if books:
            self.key(tenant_id)
            self.write_marker(tenant_id)

    def recreate(self, gone_index: int, cell_index: int | None) -> None:
        """A deleted tenant's id created again: a new tenant, none of the old one's keys let in."""
        gone = sorted(set(self.model.gone) - set(self.model.tenants))
        self.create(cell_index, False, gone[gone_index % len(gone)] if gone else None)

    def create_duplicate(self, index: int) -> None:
        tenant_id = self.tenant(index)
        if tenant_id == UNKNOWN_TENANT:
            return
        self.refused("duplicate_tenant", "tenants", "create", tenant_id)
        self.refused("duplicate_tenant", "tenants", "create", tenant_id, "--cell", self.model.tenants[tenant_id].cell)

    def write_marker(self, tenant_id: str) -> None:
        """The tenant's marker ledger, written through the router with its first key once the router routes it."""
        t = self.model.tenants[tenant_id]
        auth = (tenant_id, t.live_keys()[0].secret)
        answer = {}

        def written():
            r = self.call("POST", "/api/ledgers", auth, json={"name": f"marker of {tenant_id}"},
                          headers={"Idempotency-Key": f"marker-{tenant_id}"})
            answer["r"] = r
            return r.status_code != 401, r.status_code  # 401: the router does not route the new tenant yet

        self.until(written, f"the new tenant {tenant_id} reached through the router")
        r = answer["r"]
        assert r.status_code == 201, r.text
        t.marker = r.json()["id"]

    def discard_marker(self, index: int) -> None:
        """DELETE of the tenant's marker ledger through the router: discarded, from then on 404 and in no list, yet
        still data of the tenant's (`tenants delete` refuses it)."""
        t = self.model.tenants.get(self.tenant(index))
        if t is None or not t.marker or not t.live_keys():
            return
        auth = (t.id, t.live_keys()[0].secret)
        r = self.call("DELETE", f"/api/ledgers/{t.marker}", auth)
        if t.discarded:
            assert r.status_code == 404, (r.status_code, r.text)
        else:
            assert r.status_code == 200 and r.json()["discarded_at"], (r.status_code, r.text)
        t.discarded = True

    def key(self, index_or_id) -> None:
        tenant_id = index_or_id if isinstance(index_or_id, str) else self.tenant(index_or_id)
        if tenant_id not in self.model.tenants:
            self.refused("unknown_tenant", "keys", "create", tenant_id)
            return
        created = self.ctl.json("keys", "create", tenant_id)
        assert created["tenant_id"] == tenant_id and created["revoked_at"] is None, created
        self.model.tenants[tenant_id].keys.append(Key(str(created["id"]), created["secret"]))
        self.model.audited(f"tenant:{tenant_id}", "keys.create")

    def key_unknown_tenant(self) -> None:
        self.refused("unknown_tenant", "keys", "create", UNKNOWN_TENANT)
        self.refused("unknown_tenant", "keys", "list", UNKNOWN_TENANT)

    def revoke(self, index: int, key_index: int) -> None:
        tenant_id = self.tenant(index)
        t = self.model.tenants.get(tenant_id)
        if t is None or not t.keys:
            self.revoke_unknown(index)
            return
        key = t.keys[key_index % len(t.keys)]
        # A key revoked already: exit 0, nothing more revoked (a rerun that only records a missing audit entry).
        revoked = self.ctl.json("keys", "revoke", tenant_id, key.id, "--yes")
        assert str(revoked["id"]) == key.id and revoked["revoked_at"] is not None, revoked
        if not key.revoked:  # one audit entry per revocation
            self.model.audited(f"tenant:{tenant_id}", "keys.revoke")
        key.revoked = True
        self.until(lambda: self.refused_401((tenant_id, key.secret)), f"tenant {tenant_id}'s key {key.id} refused "
                   "once revoked", REVOKE_WAIT_S)

    def revoke_unknown(self, index: int) -> None:
        """A key id no key has, or another tenant's key: refused, unknown_key (unknown_tenant for a tenant no
        catalog holds); the other tenant's key stays live."""
        tenant_id = self.tenant(index)
        code = "unknown_key" if tenant_id in self.model.tenants else "unknown_tenant"
        others = [k.id for t in self.model.tenants.values() if t.id != tenant_id for k in t.keys]
        for key_id in [str(uuid.uuid4()), "not-a-key"] + others[:1]:
            self.refused(code, "keys", "revoke", tenant_id, key_id, "--yes")

    def delete(self, index: int) -> None:
        tenant_id = self.tenant(index)
        t = self.model.tenants.get(tenant_id)
        args = ("tenants", "delete", tenant_id, "--yes")
        if t is None:
            self.refused("unknown_tenant", *args)
        elif self.model.has_moves(tenant_id):
            self.refused("tenant_has_moves", *args)
        elif t.marker or t.live_keys() or t.webhooks:
            self.refused("tenant_not_empty", *args)
        else:
            event("deleted")
            deleted = self.ctl.json(*args)
            assert (deleted["id"], deleted["cell"], deleted["deleted"], deleted["cell_rows"]) == (
                tenant_id, t.cell, True, {"tenants": 1, "api_keys": len(t.keys)}), deleted
            del self.model.tenants[tenant_id]
            self.model.audited(f"tenant:{tenant_id}", "tenants.delete")
            self.model.gone.setdefault(tenant_id, []).extend(k.secret for k in t.keys)

    def delete_gone(self, gone_index: int) -> None:
        """A deleted tenant (or one never created) is unknown to every command that names it."""
        gone = sorted(set(self.model.gone) - set(self.model.tenants)) or [UNKNOWN_TENANT]
        tenant_id = gone[gone_index % len(gone)]
        for args in (("tenants", "delete", tenant_id, "--yes"), ("tenants", "move", tenant_id, "--to", CELLS[0],
                                                                  "--yes"),
                     ("keys", "create", tenant_id), ("webhooks", "add", tenant_id, WEBHOOK_URL),
                     ("tenants", "rate-limit", tenant_id, "--per-s", "5")):
            self.refused("unknown_tenant", *args)

    def move(self, index: int, cell_index: int) -> None:
        """To another cell (cell_index 0, 1: the first or second other cell), the tenant's own (2), an unknown one (3)."""
        m, tenant_id = self.model, self.tenant(index)
        t = m.tenants.get(tenant_id)
        here = t.cell if t else CELLS[0]
        cell = ([c for c in CELLS if c != here] + [here, UNKNOWN_CELL])[cell_index % (len(CELLS) + 1)]
        args = ("tenants", "move", tenant_id, "--to", cell, "--yes")
        if t is None:
            self.refused("unknown_tenant", *args)
        elif cell not in m.cells:
            self.refused("unknown_cell", *args)
        elif cell == t.cell:
            self.refused("same_cell", *args)
        elif m.cells[cell] != "active":
            self.refused("cell_not_active", *args)
        else:
            event("moved")
            moved = self.ctl.json(*args)
            assert (moved["tenant"], moved["source"], moved["target"], moved["state"]) == (
                tenant_id, t.cell, cell, "done"), moved
            assert moved["verification"]["ok"] and moved["post_verify"]["ok"], moved
            self._moved(t, cell, moved["id"])

    def _moved(self, t: Tenant, target: str, move_id: str) -> None:
        self.model.moves.append((t.id, t.cell, target))
        self.model.move_ids.append(move_id)
        self.model.audited(f"tenant:{t.id}", "moves.start", "tenants.move", "moves.done")
        t.cell, t.epoch = target, t.epoch + 1

    def drain(self, cell_index: int) -> None:
        m, cell = self.model, self.cell(cell_index)
        args = ("cells", "drain", cell, "--yes")
        if cell not in m.cells:
            self.refused("unknown_cell", *args)
            return
        leaving = sorted(t for t, v in m.tenants.items() if v.cell == cell)
        if leaving and m.least_loaded(but=cell) is None:
            self.refused("no_active_cell", *args)
            return
        drained = self.ctl.json(*args)
        event(f"drained: {len(leaving)} tenant(s) moved off")
        if m.cells[cell] != "draining":
            m.audited(f"cell:{cell}", "cells.drain")
        m.cells[cell] = "draining"
        expected = []
        for tenant_id, done in zip(leaving, drained["moves"] + [None] * len(leaving)):
            target = m.least_loaded(but=cell)  # one at a time, each to the least-loaded active cell as its move starts
            expected.append((tenant_id, cell, target))
            self._moved(m.tenants[tenant_id], target, done and done["id"])
        assert [(d["tenant"], d["source"], d["target"], d["state"]) for d in drained["moves"]] == \
            [e + ("done",) for e in expected], drained
        assert (drained["state"], drained["tenants_left"]) == ("draining", 0), drained

    def move_command(self, index: int, command: str) -> None:
        """`moves purge|abort|resume` of a finished move: a purge deletes its source's copy unless the tenant lives
        there again (tenant_on_source), an abort is refused past the flip (move_past_flip), a resume is refused (the
        move is not running); an unknown move id is unknown_move."""
        m = self.model
        yes = ("--yes",) if command != "resume" else ()
        if not m.moves:
            self.refused("unknown_move", "moves", command, str(uuid.uuid4()), *yes)
            return
        (tenant_id, source, _), move_id = m.moves[index % len(m.moves)], m.move_ids[index % len(m.moves)]
        args = ("moves", command, move_id, *yes)
        if command == "abort":
            self.refused("move_past_flip", *args)
        elif command == "resume":
            self.refused("move_not_running", *args)
        elif m.tenants[tenant_id].cell == source:
            self.refused("tenant_on_source", *args)
        else:
            event("a move's source copy purged")
            purged = self.ctl.json(*args)
            assert (purged["id"], purged["state"]) == (move_id, "done") and purged["purged"] is not None, purged
            m.audited(f"tenant:{tenant_id}", "moves.purge")

    def undrain(self, cell_index: int) -> None:
        cell = self.cell(cell_index)
        if cell not in self.model.cells:
            self.refused("unknown_cell", "cells", "undrain", cell)
            return
        assert self.ctl.json("cells", "undrain", cell)["state"] == "active"
        if self.model.cells[cell] != "active":
            self.model.audited(f"cell:{cell}", "cells.undrain")
        self.model.cells[cell] = "active"

    def webhook(self, index: int) -> None:
        tenant_id = self.tenant(index)
        if tenant_id not in self.model.tenants:
            self.refused("unknown_tenant", "webhooks", "add", tenant_id, WEBHOOK_URL)
            return
        added = self.ctl.json("webhooks", "add", tenant_id, WEBHOOK_URL)
        assert added["url"] == WEBHOOK_URL and added["webhook_key"], added
        self.model.tenants[tenant_id].webhooks += 1
        self.model.audited(f"tenant:{tenant_id}", "webhooks.add")

    def rate_limit(self, index: int, per_s: int | None, burst: int | None) -> None:
        """`tenants rate-limit T --per-s N [--burst B]`, or `--default` (per_s None): 1..1,000,000 each, a burst only
        with a rate (its default: the rate)."""
        tenant_id = self.tenant(index)
        args = ("tenants", "rate-limit", tenant_id) + (("--default",) if per_s is None else ("--per-s", str(per_s)))
        args += ("--burst", str(burst)) if burst is not None else ()
        valid = lambda n: 0 < n <= 1_000_000  # noqa: E731
        if (per_s is not None and not valid(per_s)) or (burst is not None and (per_s is None or not valid(burst))):
            self.refused("invalid_rate_limit", *args)
        elif tenant_id not in self.model.tenants:
            self.refused("unknown_tenant", *args)
        else:
            limited = self.ctl.json(*args)
            rate = (per_s, per_s if burst is None else burst)
            assert (limited["rate_limit_per_s"], limited["rate_burst"]) == rate, limited
            self.model.tenants[tenant_id].rate = rate
            self.model.audited(f"tenant:{tenant_id}", "tenants.rate_limit")

    def junk_credentials(self, index: int) -> None:
        """Credentials that name no tenant, a wrong key, another tenant's key, none, or are no Basic credentials at
        all: 401 problem+json through the router, never a 5xx, never data."""
        tenant_id = self.tenant(index)
        others = [k.secret for t in self.model.tenants.values() if t.id != tenant_id for k in t.live_keys()]
        for auth in [(tenant_id, "wrong-" + uuid.uuid4().hex), (tenant_id, ""), (UNKNOWN_TENANT, "x")] + \
                [(tenant_id, s) for s in others[:1]]:
            assert self.refused_401(auth)[0], auth
        for header in ("", "Basic", "Basic !!!", "Bearer abc", "Basic " + "QQ==" * 3):
            r = self.http.get("/api/ledgers", headers={"Authorization": header} if header else {})
            assert r.status_code == 401 and _problem(r)["code"] == "unauthorized", (header, r.status_code, r.text)

    def unknown_names(self, index: int) -> None:
        """Names no catalog holds, and ids no tenant may have: each refused with its code."""
        gone = sorted(set(self.model.gone) - set(self.model.tenants)) or [UNKNOWN_TENANT]
        tenant_id = gone[index % len(gone)]
        for args in (("tenants", "show", tenant_id), ("keys", "list", tenant_id), ("webhooks", "list", tenant_id),
                     ("verify", "--tenant", tenant_id)):
            self.refused("unknown_tenant", *args)
        for args in (("cells", "show", UNKNOWN_CELL), ("tenants", "list", "--cell", UNKNOWN_CELL),
                     ("verify", "--cell", UNKNOWN_CELL)):
            self.refused("unknown_cell", *args)
        for move_id in (str(uuid.uuid4()), "not-a-move"):
            self.refused("unknown_move", "moves", "show", move_id)
        for bad in ("Bad Id!", "x" * 64, "", "a/b"):
            self.refused("invalid_tenant_id", "tenants", "create", bad)

    # ---- what the operator and the clients see ----

    def observe(self) -> None:
        m, ctl = self.model, self.ctl
        assert {c["name"]: (c["state"], c["tenants"]) for c in ctl.json("cells", "list")} == {
            c: (s, m.loads()[c]) for c, s in m.cells.items()}
        assert {t["id"]: (t["cell"], t["state"], t["epoch"], (t["rate_limit_per_s"], t["rate_burst"]))
                for t in ctl.json("tenants", "list")} == {
            t.id: (t.cell, "active", t.epoch, t.rate) for t in m.tenants.values()}
        pages, after = [], ""
        while page := ctl.json("tenants", "list", "--limit", "2", "--after", after):
            pages += [t["id"] for t in page]
            after = page[-1]["id"]
        assert pages == sorted(m.tenants)
        for c in m.cells:
            assert sorted(t["id"] for t in ctl.json("tenants", "list", "--cell", c)) == sorted(
                t.id for t in m.tenants.values() if t.cell == c)
        audit: dict[str, list[str]] = {}
        for entry in reversed(ctl.json("audit", "--limit", "10000")):
            audit.setdefault(entry["subject"], []).append(entry["action"])
        assert audit == m.audit
        assert sorted((v["id"], v["tenant"], v["source"], v["target"], v["state"])
                      for v in ctl.json("moves", "list", "--limit", "10000")) == sorted(
            (i, *mv, "done") for i, mv in zip(m.move_ids, m.moves))
        for t in m.tenants.values():
            shown = ctl.json("tenants", "show", t.id)
            assert (shown["cell"], shown["state_in_cell"], shown["api_keys_live"]) == (
                t.cell, "active", len(t.live_keys())), shown
            assert {str(k["id"]): k["revoked_at"] is not None for k in ctl.json("keys", "list", t.id)} == {
                k.id: k.revoked for k in t.keys}
            if t.webhooks:
                assert len(ctl.json("webhooks", "list", t.id)) == t.webhooks
        self.observe_routing()

    def observe_routing(self) -> None:
        m = self.model
        markers = {t.id: t.marker for t in m.tenants.values() if t.marker}
        for t in m.tenants.values():
            own = {t.marker} if t.marker and not t.discarded else set()
            others = sorted(set(markers.values()) - {t.marker})
            for key in t.live_keys():
                auth = (t.id, key.secret)

                def reaches_its_books(auth=auth, own=own):
                    r = self.call("GET", "/api/ledgers", auth)
                    if r.status_code != 200:
                        return False, (r.status_code, r.text)
                    seen = {ledger["id"] for ledger in r.json()}
                    assert seen <= own, f"tenant {auth[0]} sees ledgers {seen - own} that are not its own"
                    return seen == own, seen

                self.until(reaches_its_books, f"tenant {t.id}'s key {key.id} reaching its books")
                if t.discarded:
                    r = self.call("GET", f"/api/ledgers/{t.marker}", auth)
                    assert r.status_code == 404, (t.id, r.status_code, r.text)
                if others:  # another tenant's ledger, by id: 404, never its data
                    r = self.call("GET", f"/api/ledgers/{others[0]}", auth)
                    assert r.status_code == 404, (t.id, r.status_code, r.text)
            for key in t.keys:
                if key.revoked:
                    self.until(lambda auth=(t.id, key.secret): self.refused_401(auth),
                               f"tenant {t.id}'s revoked key {key.id} refused")
        for tenant_id, secrets in m.gone.items():
            for secret in secrets:
                self.until(lambda auth=(tenant_id, secret): self.refused_401(auth),
                           f"deleted tenant {tenant_id}'s key refused")

    def refused_401(self, auth: tuple[str, str]) -> tuple[bool, object]:
        r = self.call("GET", "/api/ledgers", auth)
        if r.status_code != 401:  # (a cell remembers a key it checked for CELL_API_KEY_CACHE_TTL_S)
            return False, (r.status_code, r.text)
        assert _problem(r)["code"] == "unauthorized", r.text
        return True, None

    def finish(self) -> None:
        """The design's invariants on every cell database, and ledgerctl's verifications of every live tenant."""
        async def check(url: str) -> list[str]:
            conn = await asyncpg.connect(url)
            try:
                return await verify_cell(conn, unapplied_age_max_s=None)
            finally:
                await conn.close()

        for cell in self.cells.values():
            assert asyncio.run(check(cell.database_url)) == [], cell.name
        for tenant_id in self.model.tenants:
            assert self.ctl.json("verify", "--tenant", tenant_id, "--unapplied-age-max-s", "0")["violations"] == []
            audited = self.ctl.json("audit", "verify", "--tenant", tenant_id)
            assert audited["findings"] == 0, audited


def run_plan(bench: Bench, plan: list) -> None:
    """Each step of `plan`, then bench.observe(); a failure names the steps that led there."""
    for n, step in enumerate(plan):
        try:
            getattr(bench, step[0])(*step[1:])
            bench.observe()
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nsteps={plan[:n + 1]}") from None
    bench.finish()


_index = st.integers(0, 7)
_cell = st.integers(0, len(CELLS))  # the last: a cell the catalog does not know
_create = st.tuples(st.just("create"), st.none() | _cell, st.sampled_from([False, False, True]), st.none(),
                    st.integers(0, 2))
STEPS_BY_NAME = {
    "create": _create,
    "key": st.tuples(st.just("key"), _index),
    "revoke": st.tuples(st.just("revoke"), _index, _index),
    "delete": st.tuples(st.just("delete"), _index),
    "move": st.tuples(st.just("move"), _index, _cell),
    "drain": st.tuples(st.just("drain"), _cell),
    "undrain": st.tuples(st.just("undrain"), _cell),
    "recreate": st.tuples(st.just("recreate"), _index, st.none() | _cell),
    "webhook": st.tuples(st.just("webhook"), _index),
    "rate_limit": st.tuples(st.just("rate_limit"), _index, st.sampled_from([None, 0, 50, 1_000_000, 1_000_001]),
                            st.sampled_from([None, 0, 7, 1_000_001])),
    "discard_marker": st.tuples(st.just("discard_marker"), _index),
    "move_command": st.tuples(st.just("move_command"), _index, st.sampled_from(["purge", "abort", "resume"])),
    "create_duplicate": st.tuples(st.just("create_duplicate"), _index),
    "key_unknown_tenant": st.tuples(st.just("key_unknown_tenant")),
    "revoke_unknown": st.tuples(st.just("revoke_unknown"), _index),
    "delete_gone": st.tuples(st.just("delete_gone"), _index),
    "unknown_names": st.tuples(st.just("unknown_names"), _index),
    "junk_credentials": st.tuples(st.just("junk_credentials"), _index),
}
# The commands that change the catalog come more often than the ones that are refused.
WEIGHTS = {"create": 4, "move": 4, "key": 2, "revoke": 2, "delete": 3, "drain": 2, "undrain": 2, "recreate": 2,
           "move_command": 2}
STEP = st.sampled_from([n for n in STEPS_BY_NAME for _ in range(WEIGHTS.get(n, 1))]).flatmap(STEPS_BY_NAME.get)
# Every plan begins with a tenant with books, placed by the control plane.
PLAN = st.lists(STEP, min_size=STEPS // 2, max_size=STEPS).map(lambda steps: [("create", None, True)] + steps)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(plan=PLAN, publish=st.booleans(), subscribe=st.booleans())
# The operator's mistakes the brief names, every run: draining the last active cell while it holds a tenant, a tenant
# created on or moved to a draining cell, moved to its own cell, a deleted tenant moved (delete_gone), a drain that
# moves a tenant off, a deleted id created again; route changes seen by the periodic reload alone.
@example(plan=[("create", None, True), ("drain", 1), ("drain", 2), ("drain", 0), ("create", 1, False, None, 0),
               ("move", 0, 0), ("move", 0, 2), ("undrain", 1), ("drain", 0), ("create", None, False, None, 0),
               ("delete", 0), ("delete", 1), ("delete_gone", 0), ("recreate", 0, None), ("undrain", 0),
               ("move", 0, 0)],
         publish=False, subscribe=False)
def test_catalog_and_routing_follow_the_model(plan, publish, subscribe, make_database, redis_url, model_cells):
    bench = Bench(make_database, redis_url, model_cells, publish, subscribe)
    try:
        bench.observe()
        run_plan(bench, plan)
    finally:
        bench.close()
