-- Kagzi schema v6: the time conversions are inlined into the statements
-- that use them. See docs/benchmarks.md.
--
-- kagzi_us and kagzi_ts were declared IMMUTABLE, but their bodies are only
-- STABLE (extract(epoch FROM timestamptz) and timestamptz + interval depend
-- on the time zone setting for other fields). PostgreSQL does not inline a
-- function whose body is more volatile than its declaration, so every call
-- ran as a function of its own: the body's stored tree read back, planned
-- and executed, per call and per row. A claim of 8 runs made 64 such calls;
-- during kagzi-bench's bench3 they were 7% of PostgreSQL's CPU. Declared
-- STABLE (what they are: no index or constraint uses them), they are
-- inlined and cost what the expression costs.
CREATE OR REPLACE FUNCTION kagzi_us(t timestamptz) RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN CASE WHEN isfinite(t) THEN (extract(epoch FROM t) * 1000000)::bigint END;
CREATE OR REPLACE FUNCTION kagzi_ts(us bigint) RETURNS timestamptz
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN timestamptz 'epoch' + us * interval '1 microsecond';
