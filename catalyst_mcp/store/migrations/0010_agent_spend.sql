-- What the agent's model calls cost (issue 13): one row per UTC day, agent and model, added to after every
-- response from the usage it reports times the configured per-model prices. The daily budget
-- (CATALYST_AGENT__DAILY_BUDGET_USD) is checked against the day's sum over every agent of this database, so it
-- holds across runs and processes. Not part of the book: a reset keeps it (the money was spent).

CREATE TABLE agent_spend (
    day                 date NOT NULL,
    agent_id            text NOT NULL,
    model               text NOT NULL,
    calls               bigint NOT NULL DEFAULT 0 CHECK (calls >= 0),
    input_tokens        bigint NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens       bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cache_write_tokens  bigint NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
    cache_read_tokens   bigint NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    usd                 numeric NOT NULL DEFAULT 0 CHECK (usd >= 0),
    updated_at          timestamptz NOT NULL,
    PRIMARY KEY (day, agent_id, model)
);
