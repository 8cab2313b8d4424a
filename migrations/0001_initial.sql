-- Kagzi schema v1: runs, their journal (steps), and the registry of live
-- daemons with the workflows each has loaded. See docs/schema.md.

-- Timestamps cross to the binaries as microseconds since the Unix epoch.
CREATE FUNCTION kagzi_us(t timestamptz) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (extract(epoch FROM t) * 1000000)::bigint;
CREATE FUNCTION kagzi_ts(us bigint) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN timestamptz 'epoch' + us * interval '1 microsecond';

CREATE TABLE kagzi_runs (
    id               uuid PRIMARY KEY,
    workflow         text NOT NULL,
    -- NULL until the first claim pins the run to the highest loaded version.
    version          integer,
    status           text NOT NULL DEFAULT 'PENDING'
                     CHECK (status IN ('PENDING', 'RUNNING', 'SLEEPING',
                                       'COMPLETED', 'FAILED', 'CANCELLED')),
    -- json (not jsonb) keeps the exact text a workflow or user supplied.
    input            json NOT NULL,
    output           json,
    error            text,
    priority         integer NOT NULL DEFAULT 0,
    -- When a PENDING or SLEEPING run becomes claimable.
    available_at     timestamptz NOT NULL DEFAULT now(),
    -- The lease: which daemon instance runs it, until when, and the fencing
    -- token bumped at every claim. Writes for a run check owner and epoch.
    lease_owner      uuid,
    lease_expires_at timestamptz,
    lease_epoch      bigint NOT NULL DEFAULT 0,
    -- Number of times the run was claimed.
    attempts         integer NOT NULL DEFAULT 0,
    parent_run_id    uuid REFERENCES kagzi_runs (id),
    idempotency_key  text UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    CHECK ((status = 'RUNNING') = (lease_owner IS NOT NULL))
);

-- Claimable now or later: PENDING and SLEEPING runs by wake time.
CREATE INDEX kagzi_runs_runnable ON kagzi_runs (available_at)
    WHERE status IN ('PENDING', 'SLEEPING');
-- Leased runs by expiry, for takeover, and by owner, for heartbeats.
CREATE INDEX kagzi_runs_lease_expiry ON kagzi_runs (lease_expires_at)
    WHERE status = 'RUNNING';
CREATE INDEX kagzi_runs_lease_owner ON kagzi_runs (lease_owner)
    WHERE status = 'RUNNING';
CREATE INDEX kagzi_runs_workflow_created ON kagzi_runs (workflow, created_at);
CREATE INDEX kagzi_runs_status_created ON kagzi_runs (status, created_at);
CREATE INDEX kagzi_runs_parent ON kagzi_runs (parent_run_id)
    WHERE parent_run_id IS NOT NULL;

-- The journal: one row per step id of a run, in the order first recorded.
CREATE TABLE kagzi_steps (
    run_id      uuid NOT NULL REFERENCES kagzi_runs (id) ON DELETE CASCADE,
    step_id     text NOT NULL,
    seq         integer NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('step', 'sleep', 'event', 'child')),
    status      text NOT NULL CHECK (status IN ('COMPLETED', 'FAILED')),
    output      json,
    error       text,
    -- 'retryable' or 'permanent' for a FAILED step.
    error_kind  text,
    attempts    integer NOT NULL DEFAULT 1,
    wake_at     timestamptz,
    started_at  timestamptz,
    finished_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, step_id),
    UNIQUE (run_id, seq)
);

-- Daemon instances (one row per kagzid process start) and their heartbeats.
CREATE TABLE kagzi_daemons (
    id           uuid PRIMARY KEY,
    hostname     text NOT NULL,
    pid          integer NOT NULL,
    version      text NOT NULL,
    concurrency  integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    -- How long after heartbeat_at the daemon counts as dead (its lease TTL).
    lease_ttl_ms bigint NOT NULL
);

-- What each live daemon has loaded.
CREATE TABLE kagzi_daemon_workflows (
    daemon_id   uuid NOT NULL REFERENCES kagzi_daemons (id) ON DELETE CASCADE,
    workflow    text NOT NULL,
    version     integer NOT NULL,
    plugin_path text NOT NULL,
    plugin_name text NOT NULL,
    PRIMARY KEY (daemon_id, workflow, version)
);

-- Every (workflow, version) any daemon ever registered.
CREATE TABLE kagzi_workflows (
    workflow   text NOT NULL,
    version    integer NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow, version)
);

-- Wake-ups: daemons LISTEN on kagzi_wakeup (a run became claimable now);
-- waiters LISTEN on kagzi_run_finished (payload: the run id).
CREATE FUNCTION kagzi_notify_runs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'PENDING' AND NEW.available_at <= now()
       AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status) THEN
        PERFORM pg_notify('kagzi_wakeup', NEW.workflow);
    END IF;
    IF NEW.status IN ('COMPLETED', 'FAILED', 'CANCELLED')
       AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status) THEN
        PERFORM pg_notify('kagzi_run_finished', NEW.id::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER kagzi_runs_notify
    AFTER INSERT OR UPDATE OF status ON kagzi_runs
    FOR EACH ROW EXECUTE FUNCTION kagzi_notify_runs();
