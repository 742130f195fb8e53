-- Accounts whose pending debits or credits have passed 2^62 (half the signed 64-bit range): their postings
-- take the exact overflow check (ledger_headroom), which sums the account's queued effects. Set by
-- ledger_headroom and ledger_apply, never cleared (a cleared flag would only make a check cheaper).
ALTER TABLE ledger_accounts ADD COLUMN headroom_low boolean NOT NULL DEFAULT false;
