-- Kagzi schema v7: only runs with an idempotency key are in its unique
-- index. See docs/benchmarks.md.
--
-- A unique constraint indexes every row, NULL keys too, and PostgreSQL
-- adds an entry to it for every version of a run's row: its start, its
-- claim, its end, each park and wake. Most runs have no key, so those
-- entries were pure upkeep: three index insertions per workflow of
-- kagzi-bench's bench3, found by nothing. A partial unique index keeps the
-- same guarantee for the keys that exist. Statements that rely on it name
-- its predicate (ON CONFLICT (idempotency_key) WHERE idempotency_key IS
-- NOT NULL); lookups by key use it as before.
--
-- Building it locks kagzi_runs against writes while it reads the runs
-- that have a key; the migration runs when kagzid starts, before it serves.
CREATE UNIQUE INDEX kagzi_runs_idempotency_key ON kagzi_runs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
ALTER TABLE kagzi_runs DROP CONSTRAINT kagzi_runs_idempotency_key_key;
