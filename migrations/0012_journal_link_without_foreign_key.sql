-- Kagzi schema v12: a journal entry's link to its run is kept by the lease
-- fence and a trigger, not by a foreign key. See docs/benchmarks.md.
--
-- The foreign key checked every journal row it inserted: a query of its
-- own (SELECT ... FOR KEY SHARE on kagzi_runs), queued as a trigger event
-- and run through SPI, per step; in a group's step records, up to a fifth
-- of the statement. And the check was redundant. Every statement that
-- writes a journal entry (PgStore's step records, park, event, child and
-- helper writes) first locks its run's row, FOR NO KEY UPDATE or by
-- updating it, and matches the lease under that lock. That lock conflicts
-- with a DELETE, so the run exists until the entry commits, and no entry is
-- written for a run that does not exist.
--
-- What the key also did, deleting a run's journal with the run (ON DELETE
-- CASCADE), this trigger does. It runs before each row's delete, once the
-- row is locked, so no entry of that run can be written in between, and
-- the run's own entries are gone before the delete's other checks look.
-- A journal entry that names a child run (child_run_id) still refuses to
-- let that child be deleted.
ALTER TABLE kagzi_steps DROP CONSTRAINT kagzi_steps_run_id_fkey;

CREATE FUNCTION kagzi_delete_journal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM kagzi_steps WHERE run_id = OLD.id;
    RETURN OLD;
END;
$$;

CREATE TRIGGER kagzi_runs_delete_journal
    BEFORE DELETE ON kagzi_runs
    FOR EACH ROW EXECUTE FUNCTION kagzi_delete_journal();

