"""The reads tests' long histories: many postings of a tenant written in one statement."""

# `count` ($5) postings of 5 from $4[1] to $4[2] of tenant $1 in ledger $2, status $7, effective $6 seconds apart from
# $3 (-1: back in time; 0: all at $3). Written set-wise, in one ledger_post_queued_group call (the rows ledger_post
# writes for each, tests/integration/cell/test_posting_groups.py), in about a third of the time of a ledger_post call
# each: the long histories were the largest part of these tests' time.
POSTINGS_SPACED = (
    "WITH p AS (SELECT g, gen_random_uuid() AS id FROM generate_series(1, $5) g),"
    " e AS (SELECT p.g, k, gen_random_uuid() AS id FROM p, generate_series(1, 2) k)"
    " SELECT ledger_post_queued_group($1, (SELECT array_agg(id ORDER BY g) FROM p),"
    " array_fill($2::uuid, ARRAY[$5]), array_fill('d'::text, ARRAY[$5]), array_fill($7::text, ARRAY[$5]),"
    " (SELECT array_agg($3::timestamptz + g * $6 * interval '1 second' ORDER BY g) FROM p),"
    " array_fill(NULL::text, ARRAY[$5]), (SELECT jsonb_agg('{}'::jsonb) FROM p), array_fill(NULL::text, ARRAY[$5]),"
    " array_fill(NULL::text, ARRAY[$5]), (SELECT jsonb_agg('{}'::jsonb) FROM p), '[]'::jsonb,"
    " array_fill(NULL::text, ARRAY[$5]), array_fill(NULL::bytea, ARRAY[$5]), array_fill(NULL::bytea, ARRAY[$5]),"
    " (SELECT array_agg(g::int ORDER BY g, k) FROM e), (SELECT array_agg(id ORDER BY g, k) FROM e),"
    " (SELECT array_agg(($4::uuid[])[k] ORDER BY g, k) FROM e),"
    " (SELECT array_agg((ARRAY['debit', 'credit'])[k] ORDER BY g, k) FROM e),"
    " (SELECT array_agg(5::bigint ORDER BY g, k) FROM e), NULL)")
