-- Kagzi schema v10: running runs are not in kagzi_runs_status_created. See
-- docs/benchmarks.md.
--
-- Every claim wrote a RUNNING entry into the (status, created_at) index,
-- dead again at the run's end, and nothing needs it: the runs that are
-- RUNNING are those leased, at most the daemons' concurrency, and their
-- own partial indexes (kagzi_runs_lease_expiry, kagzi_runs_lease_owner)
-- find them. Worse, statistics taken while no run was RUNNING made the
-- status index look like the cheapest way to find a lease: with a million
-- parked runs, the group commit's step records read every RUNNING entry of
-- it (the dead ones too) to find the few runs of the group. Without those
-- entries, a lease is found by (lease_owner, id) or the primary key.
-- Listing runs by any other status still uses this index.
DROP INDEX kagzi_runs_status_created;
CREATE INDEX kagzi_runs_status_created ON kagzi_runs (status, created_at)
    WHERE status <> 'RUNNING';
