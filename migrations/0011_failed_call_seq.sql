-- Kagzi schema v11: a FAILED run remembers which call failed it, so that
-- kagzictl retry runs again only that call's failed steps. See
-- PgStore::RetryRun and docs/ARCHITECTURE.md.
--
-- failed_call_seq is the journal seq at which the run's last call began
-- (its step, sleep, wait, child call or helper; a parallel group's first
-- member) when the workflow returned its failure. A retry deletes the
-- FAILED journal entries from that seq on, so a step whose failure the
-- workflow caught and went past keeps its recorded outcome and is not run
-- again. NULL: no call is to blame (the run failed before its first call,
-- or by its crash limit, in a step never recorded), and a retry deletes
-- no entry.
ALTER TABLE kagzi_runs ADD COLUMN failed_call_seq integer;

-- Runs that failed before this column existed keep the retry they had:
-- every FAILED entry runs again.
UPDATE kagzi_runs r SET failed_call_seq =
    (SELECT min(s.seq) FROM kagzi_steps s WHERE s.run_id = r.id AND s.status = 'FAILED')
    WHERE r.status = 'FAILED';
