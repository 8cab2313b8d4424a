-- Kagzi schema v5: notifications sent after the commit, not inside it. See
-- docs/ARCHITECTURE.md ("Wake-ups") and docs/benchmarks.md.
--
-- A transaction that calls pg_notify takes one database-wide lock when it
-- commits and holds it until the commit is durable (the WAL flush), so
-- every notifying transaction commits after the one before it: PostgreSQL
-- cannot flush them together. With the status trigger notifying inside
-- every start and every completion, a start from each of 32 clients went
-- from 19,000/s (no NOTIFY) to 5,400/s. The busy writers therefore say
-- "notify after commit" (SET LOCAL kagzi.notify = 'after_commit') and send
-- the notifications themselves, as a statement of its own right after the
-- commit (core/src/pg_store_internal.h): a transaction that only notifies
-- writes nothing that needs a flush, so it holds the lock for microseconds.
-- Everything else (kagzictl cancel, wake, retry, a park that wakes at
-- once) keeps the trigger's notifications.

CREATE OR REPLACE FUNCTION kagzi_notify_runs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    notify boolean := current_setting('kagzi.notify', true) IS DISTINCT FROM 'after_commit';
BEGIN
    IF notify AND NEW.status IN ('PENDING', 'SLEEPING') AND NEW.available_at <= now()
       AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status
            OR OLD.available_at IS DISTINCT FROM NEW.available_at) THEN
        PERFORM pg_notify('kagzi_wakeup', NEW.workflow);
    END IF;
    IF NEW.status IN ('COMPLETED', 'FAILED', 'CANCELLED')
       AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status) THEN
        IF notify THEN
            PERFORM pg_notify('kagzi_run_finished', NEW.id::text);
        END IF;
        IF NEW.parent_run_id IS NOT NULL THEN
            PERFORM kagzi_wake(NEW.parent_run_id);
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

-- After commit the trigger has nothing to do for a run without a parent,
-- so PostgreSQL does not call it (no PL/pgSQL call per start or completion).
DROP TRIGGER kagzi_runs_notify ON kagzi_runs;
CREATE TRIGGER kagzi_runs_notify
    AFTER INSERT OR UPDATE OF status, available_at ON kagzi_runs
    FOR EACH ROW WHEN (NEW.status <> 'RUNNING' AND (NEW.parent_run_id IS NOT NULL
        OR current_setting('kagzi.notify', true) IS DISTINCT FROM 'after_commit'))
    EXECUTE FUNCTION kagzi_notify_runs();
