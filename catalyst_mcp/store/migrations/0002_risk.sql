-- Risk engine: the price an approval was valued at (re-checked at execution and reserved while an order
-- works), and each trading day's starting equity (the base of the daily loss limit).

ALTER TABLE risk_decisions ADD COLUMN reference_price numeric;
ALTER TABLE orders ADD COLUMN reference_price numeric;

CREATE TABLE equity_marks (
    market        text NOT NULL CHECK (market IN ('US', 'HK')),
    trading_day   date NOT NULL,
    start_equity  numeric NOT NULL,
    recorded_at   timestamptz NOT NULL,
    PRIMARY KEY (market, trading_day)
);

CREATE INDEX orders_recent ON orders (market, created_at DESC);
