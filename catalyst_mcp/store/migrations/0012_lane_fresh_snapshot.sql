-- The lane's lock taken by the holder's first read (store/lane.py, ADR 0013). One statement tries the lock and
-- reads; PostgreSQL took that statement's snapshot before the lock was granted, so the read counts only if no
-- transaction ended in between. This function answers with a snapshot taken when it runs (a VOLATILE
-- function's query takes a fresh one); the statement compares it with its own (pg_current_snapshot()).
CREATE FUNCTION lane_fresh_snapshot() RETURNS text
    LANGUAGE plpgsql VOLATILE
    AS $$ BEGIN RETURN pg_current_snapshot()::text; END $$;
