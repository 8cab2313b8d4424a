-- Kagzi schema v9: run ids ordered by creation time. See docs/benchmarks.md.
--
-- Run ids were random (UUID version 4): every new run's key went to a
-- random leaf of kagzi_runs' primary key, and its journal entries to a
-- random leaf of kagzi_steps' primary key (run_id, step_id). Once those
-- indexes outgrow shared_buffers (about a million runs with the default
-- 128 MB), most of those inserts and lookups read a page from outside the
-- buffer pool and evict another. kagzi_new_run_id() makes a UUID version 7
-- (RFC 9562): the first 48 bits are the Unix time in milliseconds, the
-- rest random (the version 4 UUID's random bits, its version nibble set
-- to 7), so new keys go to the right-hand edge of the indexes, whose pages
-- stay cached, and run ids sort by creation time. Existing ids are kept.
CREATE FUNCTION kagzi_new_run_id() RETURNS uuid
    LANGUAGE sql VOLATILE PARALLEL SAFE
    RETURN encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid;
