-- Live updates and agent liveness. Every change a subscriber may care about is announced by a trigger on
-- channel 'catalyst_changes' (delivered at commit, identical payloads of one transaction collapsed), so no
-- service code publishes anything. The payload is a small JSON object; the server maps it to resource URIs.

CREATE TABLE agent_heartbeats (
    agent_id      text NOT NULL,
    market        text NOT NULL CHECK (market IN ('US', 'HK')),
    last_seen_at  timestamptz NOT NULL,
    last_tool     text,
    cycle_id      text,
    PRIMARY KEY (agent_id, market)
);

INSERT INTO agent_heartbeats (agent_id, market, last_seen_at, cycle_id)
SELECT DISTINCT ON (agent_id, market) agent_id, market, updated_at, cycle_id
FROM cycles ORDER BY agent_id, market, updated_at DESC, seq DESC;

CREATE INDEX cycles_by_start ON cycles (started_at DESC, seq DESC);

-- A heartbeat never moves back in time: events of one call may commit out of order.
CREATE FUNCTION catalyst_beat(p_agent text, p_market text, p_at timestamptz, p_tool text, p_cycle text)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO agent_heartbeats AS h (agent_id, market, last_seen_at, last_tool, cycle_id)
    VALUES (p_agent, p_market, p_at, p_tool, p_cycle)
    ON CONFLICT (agent_id, market) DO UPDATE
        SET last_seen_at = EXCLUDED.last_seen_at, last_tool = EXCLUDED.last_tool, cycle_id = EXCLUDED.cycle_id
        WHERE h.last_seen_at <= EXCLUDED.last_seen_at
$$;

CREATE FUNCTION catalyst_notify_cycle() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('catalyst_changes',
        json_build_object('kind', 'cycle', 'cycle_id', NEW.cycle_id, 'market', NEW.market)::text);
    IF TG_OP = 'INSERT' THEN
        PERFORM catalyst_beat(NEW.agent_id, NEW.market, NEW.started_at, 'start_cycle', NEW.cycle_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER cycles_notify AFTER INSERT OR UPDATE ON cycles
    FOR EACH ROW EXECUTE FUNCTION catalyst_notify_cycle();

CREATE FUNCTION catalyst_notify_cycle_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    SELECT agent_id, market INTO c FROM cycles WHERE cycle_id = NEW.cycle_id;
    PERFORM pg_notify('catalyst_changes',
        json_build_object('kind', 'cycle', 'cycle_id', NEW.cycle_id, 'market', c.market)::text);
    PERFORM catalyst_beat(c.agent_id, c.market, NEW.completed_at, NEW.tool, NEW.cycle_id);
    RETURN NULL;
END $$;

CREATE TRIGGER cycle_events_notify AFTER INSERT ON cycle_events
    FOR EACH ROW EXECUTE FUNCTION catalyst_notify_cycle_event();

-- Beats written by the cycle triggers above are announced by them; only a beat of its own is announced here.
CREATE FUNCTION catalyst_notify_heartbeat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() = 1 THEN
        PERFORM pg_notify('catalyst_changes',
            json_build_object('kind', 'agent', 'agent_id', NEW.agent_id, 'market', NEW.market)::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER agent_heartbeats_notify AFTER INSERT OR UPDATE ON agent_heartbeats
    FOR EACH ROW EXECUTE FUNCTION catalyst_notify_heartbeat();

CREATE FUNCTION catalyst_notify_market() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row_market text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_market := OLD.market;
    ELSE
        row_market := NEW.market;
    END IF;
    PERFORM pg_notify('catalyst_changes',
        json_build_object('kind', TG_ARGV[0], 'market', row_market)::text);
    RETURN NULL;
END $$;

-- Once per statement: a sync moves thousands of rows in a few statements. Without the market (a statement-level
-- trigger has no row), every server re-reads its book; the rows themselves are cheap to read again.
CREATE FUNCTION catalyst_notify_positions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('catalyst_changes', json_build_object('kind', 'positions')::text);
    RETURN NULL;
END $$;

CREATE TRIGGER positions_notify AFTER INSERT OR UPDATE OR DELETE ON positions
    FOR EACH STATEMENT EXECUTE FUNCTION catalyst_notify_positions();

CREATE TRIGGER trading_state_notify AFTER INSERT OR UPDATE ON trading_state
    FOR EACH ROW EXECUTE FUNCTION catalyst_notify_market('trading_state');

-- `catalyst-mcp reset` truncates the book: forget the agents and tell everyone to read again.
CREATE FUNCTION catalyst_notify_reset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM agent_heartbeats;
    PERFORM pg_notify('catalyst_changes', json_build_object('kind', 'reset')::text);
    RETURN NULL;
END $$;

CREATE TRIGGER cycles_reset AFTER TRUNCATE ON cycles
    FOR EACH STATEMENT EXECUTE FUNCTION catalyst_notify_reset();
CREATE TRIGGER positions_reset AFTER TRUNCATE ON positions
    FOR EACH STATEMENT EXECUTE FUNCTION catalyst_notify_reset();
