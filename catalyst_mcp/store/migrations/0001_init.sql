-- The book, the workflow and the audit trail. Money and quantities are NUMERIC, times timestamptz.

CREATE TABLE cycles (
    cycle_id      text PRIMARY KEY CHECK (cycle_id ~ '^(us|hk)_\d{8}_\d{6}_[0-9a-f]{6}$'),
    agent_id      text NOT NULL,
    market        text NOT NULL CHECK (market IN ('US', 'HK')),
    mode          text NOT NULL CHECK (mode IN ('trade', 'scan', 'close')),
    status        text NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'completed', 'failed', 'abandoned')),
    started_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    completed_at  timestamptz,
    summary       text,
    seq           bigint GENERATED ALWAYS AS IDENTITY UNIQUE  -- start order, when clocks tie
);
-- Invariant 9: one active cycle per agent and market, across processes.
CREATE UNIQUE INDEX cycles_one_active ON cycles (agent_id, market) WHERE status = 'active';
CREATE INDEX cycles_by_agent ON cycles (agent_id, started_at DESC);

CREATE TABLE cycle_events (
    event_id      bigserial PRIMARY KEY,
    cycle_id      text NOT NULL REFERENCES cycles (cycle_id),
    phase         text NOT NULL,
    status        text NOT NULL CHECK (status IN ('in_progress', 'completed', 'failed')),
    tool          text NOT NULL,
    detail        text,
    started_at    timestamptz NOT NULL,
    completed_at  timestamptz NOT NULL
);
CREATE INDEX cycle_events_by_cycle ON cycle_events (cycle_id, event_id);

CREATE TABLE trading_state (
    market      text PRIMARY KEY CHECK (market IN ('US', 'HK')),
    state       text NOT NULL CHECK (state IN ('active', 'reducing', 'halted')),
    reason      text,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changed_by  text NOT NULL DEFAULT 'system'
);
INSERT INTO trading_state (market, state) VALUES ('US', 'active'), ('HK', 'active');

CREATE TABLE positions (
    position_id      bigserial PRIMARY KEY,
    market           text NOT NULL CHECK (market IN ('US', 'HK')),
    symbol           text NOT NULL,
    side             text NOT NULL CHECK (side IN ('long', 'short')),
    quantity         numeric NOT NULL CHECK (quantity > 0),
    avg_entry_price  numeric NOT NULL CHECK (avg_entry_price >= 0),
    stop_loss        numeric,
    take_profit      numeric,
    status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    opened_at        timestamptz NOT NULL,
    closed_at        timestamptz,
    close_reason     text,
    realized_pnl     numeric,
    updated_at       timestamptz NOT NULL
);
CREATE UNIQUE INDEX positions_one_open ON positions (market, symbol) WHERE status = 'open';

CREATE TABLE risk_decisions (
    decision_id     bigserial PRIMARY KEY,
    approval_id     uuid UNIQUE,
    cycle_id        text REFERENCES cycles (cycle_id),
    market          text NOT NULL,
    symbol          text NOT NULL,
    side            text NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity        numeric NOT NULL CHECK (quantity > 0),
    order_type      text NOT NULL CHECK (order_type IN ('market', 'limit')),
    limit_price     numeric,
    stop_loss       numeric,
    take_profit     numeric,
    approved        boolean NOT NULL,
    checks          jsonb NOT NULL,
    limits_version  text NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz,
    used_at         timestamptz,
    CHECK (approved = (approval_id IS NOT NULL))
);

CREATE TABLE orders (
    order_id         bigserial PRIMARY KEY,
    client_order_id  text NOT NULL UNIQUE,
    approval_id      uuid NOT NULL UNIQUE REFERENCES risk_decisions (approval_id),
    cycle_id         text REFERENCES cycles (cycle_id),
    market           text NOT NULL,
    broker           text NOT NULL,
    symbol           text NOT NULL,
    side             text NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity         numeric NOT NULL CHECK (quantity > 0),
    order_type       text NOT NULL CHECK (order_type IN ('market', 'limit')),
    limit_price      numeric,
    stop_loss        numeric,
    take_profit      numeric,
    status           text NOT NULL CHECK (status IN
                     ('pending', 'accepted', 'partially_filled', 'filled', 'cancelled', 'rejected')),
    broker_order_id  text,
    filled_quantity  numeric NOT NULL DEFAULT 0,
    avg_fill_price   numeric,
    reject_reason    text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

CREATE TABLE fills (
    fill_id      text PRIMARY KEY,
    order_id     bigint NOT NULL REFERENCES orders (order_id),
    symbol       text NOT NULL,
    side         text NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity     numeric NOT NULL CHECK (quantity > 0),
    price        numeric NOT NULL CHECK (price > 0),
    filled_at    timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sync_runs (
    sync_id      bigserial PRIMARY KEY,
    cycle_id     text REFERENCES cycles (cycle_id),
    market       text NOT NULL,
    dry_run      boolean NOT NULL,
    forced       boolean NOT NULL,
    applied      boolean NOT NULL,
    refused      text,
    plan         jsonb NOT NULL,
    created_at   timestamptz NOT NULL
);

CREATE TABLE decisions (
    decision_id  bigserial PRIMARY KEY,
    cycle_id     text NOT NULL REFERENCES cycles (cycle_id),
    decision     text NOT NULL CHECK (length(decision) BETWEEN 1 AND 64),
    reasoning    text NOT NULL,
    symbol       text,
    created_at   timestamptz NOT NULL
);

CREATE TABLE audit_events (
    audit_id   bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    caller     text NOT NULL,
    role       text NOT NULL,
    tool       text NOT NULL,
    arguments  jsonb NOT NULL,
    outcome    text NOT NULL,
    cycle_id   text
);

-- The simulated exchange keeps its own books, apart from ours, so that the two can disagree.
CREATE SCHEMA sim;

CREATE TABLE sim.clock (
    market       text PRIMARY KEY,
    anchor_sim   timestamptz NOT NULL,
    anchor_wall  timestamptz NOT NULL
);

CREATE TABLE sim.accounts (
    market         text PRIMARY KEY,
    currency       text NOT NULL,
    cash           numeric NOT NULL,
    starting_cash  numeric NOT NULL
);

CREATE TABLE sim.orders (
    broker_order_id  text PRIMARY KEY,
    market           text NOT NULL,
    client_order_id  text NOT NULL UNIQUE,
    symbol           text NOT NULL,
    side             text NOT NULL,
    quantity         numeric NOT NULL,
    order_type       text NOT NULL,
    limit_price      numeric,
    status           text NOT NULL,
    filled_quantity  numeric NOT NULL DEFAULT 0,
    avg_fill_price   numeric,
    submitted_at     timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

CREATE TABLE sim.fills (
    fill_id          text PRIMARY KEY,
    broker_order_id  text NOT NULL REFERENCES sim.orders (broker_order_id),
    symbol           text NOT NULL,
    side             text NOT NULL,
    quantity         numeric NOT NULL,
    price            numeric NOT NULL,
    filled_at        timestamptz NOT NULL
);

CREATE TABLE sim.positions (
    market           text NOT NULL,
    symbol           text NOT NULL,
    quantity         numeric NOT NULL,
    avg_entry_price  numeric NOT NULL,
    PRIMARY KEY (market, symbol)
);
