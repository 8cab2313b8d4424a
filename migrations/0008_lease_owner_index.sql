-- Kagzi schema v8: a fenced write finds its run by (lease owner, id). See
-- docs/benchmarks.md.
--
-- Every fenced write names its run by id, lease owner and epoch. With
-- kagzi_runs_lease_owner on (lease_owner) alone, PostgreSQL's generic plan
-- for those statements (what a prepared statement runs after its first few
-- executions) chose that small partial index over the primary key, so each
-- step record, completion, park and heartbeat read every run its daemon
-- held (up to its concurrency, plus the row versions not vacuumed yet)
-- and kept the one with the id. With the id in the index, the lookup is
-- exact whichever of the two indexes the planner takes. The heartbeat and
-- a dead worker's recovery still find a daemon's runs by its first column.
DROP INDEX kagzi_runs_lease_owner;
CREATE INDEX kagzi_runs_lease_owner ON kagzi_runs (lease_owner, id)
    WHERE status = 'RUNNING';
