-- Kagzi schema v3: kagzid is a supervisor with worker processes (crash
-- isolation). See docs/ARCHITECTURE.md, "Crash isolation".

ALTER TABLE kagzi_runs
    -- Times a worker died while running this run's code, and why, last.
    ADD COLUMN crash_count integer NOT NULL DEFAULT 0,
    ADD COLUMN last_crash  text;

ALTER TABLE kagzi_daemons
    -- Each worker process registers itself; supervisor_id groups the
    -- workers of one kagzid, worker_index numbers them from 1, restarts
    -- counts how often the supervisor restarted that worker slot.
    ADD COLUMN supervisor_id uuid,
    ADD COLUMN worker_index  integer NOT NULL DEFAULT 0,
    ADD COLUMN restarts      integer NOT NULL DEFAULT 0;
