-- Kagzi schema v13: the status trigger's wake-ups name their runs. See
-- core/include/kagzi/core/wakeup.h and docs/ARCHITECTURE.md ("Wake-ups").
--
-- A kagzi_wakeup payload "<workflow><TAB><run id>" lets a daemon with a
-- free slot claim that run by its primary key, a lighter claim than the
-- walk of the claim indexes that a payload naming the workflow alone
-- calls for. Starts and the wake-ups of parents whose child ended name
-- their runs already (they notify after their commit, migration 0005);
-- from now on the trigger does too, for what it still announces: child
-- runs started by a workflow, and kagzictl's cancel, signal and retry, and
-- parks that wake at once. The finished-run notifications are unchanged.
-- A daemon that does not read run ids only reads that a run is claimable.

CREATE OR REPLACE FUNCTION kagzi_notify_runs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    notify boolean := current_setting('kagzi.notify', true) IS DISTINCT FROM 'after_commit';
BEGIN
    IF notify AND NEW.status IN ('PENDING', 'SLEEPING') AND NEW.available_at <= now()
       AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status
            OR OLD.available_at IS DISTINCT FROM NEW.available_at) THEN
        PERFORM pg_notify('kagzi_wakeup', NEW.workflow || E'\t' || NEW.id::text);
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
