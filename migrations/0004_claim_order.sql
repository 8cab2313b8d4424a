-- Kagzi schema v4: claims that stay fast with a backlog. See
-- docs/ARCHITECTURE.md ("One run's life", step 2) and docs/benchmarks.md.

-- The claim takes runnable runs in (priority DESC, available_at, id) order.
-- With only kagzi_runs_runnable (by available_at) PostgreSQL read every
-- runnable run and sorted them for each claim: 10,000 waiting runs made a
-- claim of 32 take 17 ms. With this index it reads the first 32 in order
-- (0.8 ms), and runs parked in the future sort after the runnable ones of
-- their priority, so a million of them cost nothing.
CREATE INDEX kagzi_runs_claim_order ON kagzi_runs (priority DESC, available_at, id)
    WHERE status IN ('PENDING', 'SLEEPING');

-- The status trigger does nothing when a run becomes RUNNING (a claim), so
-- that transition no longer calls it: one PL/pgSQL call less per run.
DROP TRIGGER kagzi_runs_notify ON kagzi_runs;
CREATE TRIGGER kagzi_runs_notify
    AFTER INSERT OR UPDATE OF status, available_at ON kagzi_runs
    FOR EACH ROW WHEN (NEW.status <> 'RUNNING') EXECUTE FUNCTION kagzi_notify_runs();
