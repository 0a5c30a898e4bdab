-- The position monitor (catalyst-mcp monitor): one lease per market so that a single monitor watches it, the
-- high- and low-water marks of each open position, and one row per check of a position (the signal it found
-- and what was done about it). A change of the monitor's state is announced like a cycle's, for
-- workflow_status.

CREATE TABLE monitor_state (
    market             text PRIMARY KEY CHECK (market IN ('US', 'HK')),
    holder             text NOT NULL,
    lease_until        timestamptz NOT NULL,
    started_at         timestamptz NOT NULL,
    last_pass_at       timestamptz,
    positions_watched  integer NOT NULL DEFAULT 0,
    passes             bigint NOT NULL DEFAULT 0,
    last_error         text
);

CREATE TABLE monitor_marks (
    market       text NOT NULL,
    position_id  bigint NOT NULL,
    symbol       text NOT NULL,
    high_water   numeric NOT NULL,
    low_water    numeric NOT NULL,
    updated_at   timestamptz NOT NULL,
    -- an exit approved and sent without a definite answer: the next pass replays it, never a new one
    pending_approval uuid,
    PRIMARY KEY (market, position_id)
);

CREATE TABLE monitor_checks (
    check_id     bigserial PRIMARY KEY,
    market       text NOT NULL,
    position_id  bigint NOT NULL,
    symbol       text NOT NULL,
    at           timestamptz NOT NULL,
    last_price   numeric,
    high_water   numeric,
    low_water    numeric,
    strength     text NOT NULL CHECK (strength IN ('none', 'weak', 'moderate', 'strong', 'critical')),
    rule         text,
    reason       text NOT NULL,
    action       text NOT NULL CHECK (action IN ('watched', 'closed', 'refused', 'failed')),
    detail       text
);

CREATE INDEX monitor_checks_exits ON monitor_checks (market, at DESC, check_id DESC) WHERE action <> 'watched';
CREATE INDEX monitor_checks_recent ON monitor_checks (market, at DESC, check_id DESC);

CREATE FUNCTION catalyst_notify_monitor() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('catalyst_changes', json_build_object('kind', 'monitor', 'market', NEW.market)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER monitor_state_notify AFTER INSERT OR UPDATE ON monitor_state
    FOR EACH ROW EXECUTE FUNCTION catalyst_notify_monitor();
