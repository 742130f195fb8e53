-- Ledger account categories (Modern Treasury's): named groups of accounts of one ledger and currency, nested
-- into a directed acyclic graph. A category's balances are the sums over every account reachable through the
-- graph; to read them in bounded work whatever the graph, the reachable set is stored (the closure) and
-- maintained by the change to the graph, in its transaction (routine ledger_category_refresh). Postings never
-- touch any of these tables.
-- Memberships, edges and closure rows are never deleted: a removal sets removed_at (a closure row's reachable
-- turns false). A tenant move copies rows and their later changes, but would not see a DELETE; and re-adding
-- what was removed reuses the row. No foreign keys either: a move copies table by table, each in batches of
-- its own, so a referencing row may arrive before the row it names; the cell's code checks references and
-- `ledgerctl verify` recomputes the closure.

CREATE TABLE ledger_account_categories (
    seq                bigint GENERATED ALWAYS AS IDENTITY,
    id                 uuid PRIMARY KEY,
    tenant_id          text NOT NULL,
    ledger_id          uuid NOT NULL,
    name               text NOT NULL,
    description        text,
    external_id        text,
    normal_balance     text NOT NULL CHECK (normal_balance IN ('credit', 'debit')),
    currency           text NOT NULL,
    currency_exponent  smallint NOT NULL,
    metadata           jsonb NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    discarded_at       timestamptz
);
CREATE INDEX ledger_account_categories_tenant_seq ON ledger_account_categories (tenant_id, seq);
CREATE UNIQUE INDEX ledger_account_categories_external_id ON ledger_account_categories (tenant_id, ledger_id, external_id)
    WHERE external_id IS NOT NULL AND discarded_at IS NULL;
CREATE INDEX ledger_account_categories_metadata ON ledger_account_categories USING gin (metadata jsonb_path_ops);

-- An account directly in a category.
CREATE TABLE ledger_account_category_members (
    category_id  uuid NOT NULL,
    account_id   uuid NOT NULL,
    tenant_id    text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    removed_at   timestamptz,
    PRIMARY KEY (category_id, account_id)
);
CREATE INDEX ledger_account_category_members_account ON ledger_account_category_members (account_id)
    WHERE removed_at IS NULL;

-- A category directly inside another (parent -> child).
CREATE TABLE ledger_account_category_edges (
    parent_id    uuid NOT NULL,
    child_id     uuid NOT NULL,
    tenant_id    text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    removed_at   timestamptz,
    PRIMARY KEY (parent_id, child_id),
    CHECK (parent_id <> child_id)
);
CREATE INDEX ledger_account_category_edges_child ON ledger_account_category_edges (child_id)
    WHERE removed_at IS NULL;

-- The closure: (category, account) for every account reachable from the category, directly or through nested
-- categories. A balance read sums account_balances over the reachable rows of one category.
CREATE TABLE ledger_account_category_closure (
    category_id  uuid NOT NULL,
    account_id   uuid NOT NULL,
    tenant_id    text NOT NULL,
    reachable    boolean NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (category_id, account_id)
);
CREATE INDEX ledger_account_category_closure_reachable ON ledger_account_category_closure (category_id, account_id)
    WHERE reachable;
CREATE INDEX ledger_account_category_closure_account ON ledger_account_category_closure (account_id, category_id)
    WHERE reachable;
