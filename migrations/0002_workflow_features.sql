-- Kagzi schema v2: retries, deadlines, cancellation, events, child runs and
-- deterministic helpers (ABI 1.1). See docs/ARCHITECTURE.md.

ALTER TABLE kagzi_runs
    -- A run not finished by then is failed ("deadline exceeded").
    ADD COLUMN deadline_at      timestamptz,
    -- Set by kagzictl cancel on a RUNNING run; its executor delivers
    -- KAGZI_ERR_CANCELLED at the next context call.
    ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false,
    ADD COLUMN cancel_reason    text,
    -- Bumped whenever something a parked run may wait for happens (an event
    -- arrives, a child finishes). A run parks for such a wait only if the
    -- counter still has the value it read at its claim: no lost wake-ups.
    ADD COLUMN wake_seq         bigint NOT NULL DEFAULT 0;

-- Journal entries may now be pending: a step between retry attempts
-- (RETRYING, wake_at = next attempt), an event wait or child call not yet
-- satisfied (WAITING). error_kind gains 'timeout' and 'cancelled'.
ALTER TABLE kagzi_steps DROP CONSTRAINT kagzi_steps_status_check;
ALTER TABLE kagzi_steps ADD CONSTRAINT kagzi_steps_status_check
    CHECK (status IN ('COMPLETED', 'FAILED', 'RETRYING', 'WAITING'));
ALTER TABLE kagzi_steps DROP CONSTRAINT kagzi_steps_kind_check;
ALTER TABLE kagzi_steps ADD CONSTRAINT kagzi_steps_kind_check
    CHECK (kind IN ('step', 'sleep', 'event', 'child', 'helper'));
ALTER TABLE kagzi_steps
    ADD COLUMN event_name   text,
    ADD COLUMN child_run_id uuid REFERENCES kagzi_runs (id);

-- Events (signals) sent to runs; each is consumed by at most one wait.
CREATE TABLE kagzi_events (
    id          bigserial PRIMARY KEY,
    run_id      uuid NOT NULL REFERENCES kagzi_runs (id) ON DELETE CASCADE,
    name        text NOT NULL,
    payload     json NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    consumed_at timestamptz,
    consumed_by text  -- the step id of the wait that took it
);
CREATE INDEX kagzi_events_pending ON kagzi_events (run_id, name, id)
    WHERE consumed_at IS NULL;

CREATE INDEX kagzi_runs_version ON kagzi_runs (workflow, version)
    WHERE status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED');

-- Wakes a parked run now (an event arrived, a child finished): bumps its
-- wake_seq and, if it is parked, makes it claimable at once. Locks the row,
-- so it serializes with the run's own park statement (see ParkRun).
CREATE FUNCTION kagzi_wake(run uuid) RETURNS void LANGUAGE sql AS $$
    UPDATE kagzi_runs
       SET wake_seq = wake_seq + 1,
           available_at = CASE WHEN status IN ('PENDING', 'SLEEPING')
                               THEN least(available_at, now()) ELSE available_at END
     WHERE id = run;
$$;

-- Cancels a run and, recursively, its children: PENDING and SLEEPING runs
-- become CANCELLED at once; RUNNING ones get cancel_requested (their
-- executor finishes the job at the next step boundary). Returns the number
-- of runs affected. Terminal runs are left alone.
CREATE FUNCTION kagzi_cancel(root uuid, reason text) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    r record;
BEGIN
    FOR r IN
        WITH RECURSIVE tree(id) AS (
            SELECT root
            UNION ALL
            SELECT c.id FROM kagzi_runs c JOIN tree t ON c.parent_run_id = t.id)
        SELECT k.id, k.status FROM kagzi_runs k JOIN tree USING (id)
         WHERE k.status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')
         ORDER BY k.id
           FOR UPDATE OF k
    LOOP
        IF r.status = 'RUNNING' THEN
            UPDATE kagzi_runs SET cancel_requested = true, cancel_reason = reason,
                                  updated_at = now()
             WHERE id = r.id;
        ELSE
            UPDATE kagzi_runs SET status = 'CANCELLED', cancel_requested = true,
                                  cancel_reason = reason, error = reason,
                                  lease_epoch = lease_epoch + 1,
                                  finished_at = now(), updated_at = now()
             WHERE id = r.id;
        END IF;
        n := n + 1;
    END LOOP;
    RETURN n;
END;
$$;

-- Notifications, extended: a parked run whose available_at moves to now
-- (kagzi_wake) is announced like a new one, and a finished child wakes its
-- parent.
CREATE OR REPLACE FUNCTION kagzi_notify_runs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IN ('PENDING', 'SLEEPING') AND NEW.available_at <= now()
       AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status
            OR OLD.available_at IS DISTINCT FROM NEW.available_at) THEN
        PERFORM pg_notify('kagzi_wakeup', NEW.workflow);
    END IF;
    IF NEW.status IN ('COMPLETED', 'FAILED', 'CANCELLED')
       AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status) THEN
        PERFORM pg_notify('kagzi_run_finished', NEW.id::text);
        IF NEW.parent_run_id IS NOT NULL THEN
            PERFORM kagzi_wake(NEW.parent_run_id);
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER kagzi_runs_notify ON kagzi_runs;
CREATE TRIGGER kagzi_runs_notify
    AFTER INSERT OR UPDATE OF status, available_at ON kagzi_runs
    FOR EACH ROW EXECUTE FUNCTION kagzi_notify_runs();

-- Runs parked until woken have available_at = 'infinity': keep kagzi_us
-- total (NULL for infinite times) so every reader can select them.
CREATE OR REPLACE FUNCTION kagzi_us(t timestamptz) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN isfinite(t) THEN (extract(epoch FROM t) * 1000000)::bigint END;

-- Aborts the statement that calls it: a journal write that would have
-- changed a final entry (replay should have made that impossible).
CREATE FUNCTION kagzi_journal_conflict(run uuid, step text) RETURNS integer
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'run %: step "%" conflicts with the recorded journal', run, step;
END;
$$;
