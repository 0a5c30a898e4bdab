-- The order path as one lane per market: every order carries its role (an approved entry or exit, or a
-- protective leg of a position), approvals are reservations until executed or expired, and each market's book
-- has a version that moves whenever an order or a fill changes what the broker holds for us.

ALTER TABLE orders ADD COLUMN role text NOT NULL DEFAULT 'entry'
    CHECK (role IN ('entry', 'exit', 'stop_loss', 'take_profit'));
UPDATE orders SET role = 'exit' WHERE side = 'sell';
ALTER TABLE orders ALTER COLUMN role DROP DEFAULT;
ALTER TABLE orders ADD COLUMN parent_order_id bigint REFERENCES orders (order_id);
ALTER TABLE orders ADD COLUMN stop_price numeric;
-- Protective legs are placed for an approved order (its bracket) or to keep a position protected after an
-- exit; only entries and exits are approvals of their own.
ALTER TABLE orders ALTER COLUMN approval_id DROP NOT NULL;
ALTER TABLE orders ADD CONSTRAINT orders_approval_of_entries_and_exits
    CHECK ((approval_id IS NOT NULL) = (role IN ('entry', 'exit')));
CREATE INDEX orders_working_by_symbol ON orders (market, symbol)
    WHERE status IN ('pending', 'accepted', 'partially_filled');
CREATE INDEX orders_by_broker_id ON orders (broker_order_id) WHERE broker_order_id IS NOT NULL;

-- What an approval was judged as (entry or exit) and where the cycle stood: reservations by role.
ALTER TABLE risk_decisions ADD COLUMN role text CHECK (role IN ('entry', 'exit'));
UPDATE risk_decisions SET role = CASE WHEN side = 'sell' THEN 'exit' ELSE 'entry' END;
CREATE INDEX approvals_outstanding ON risk_decisions (market, expires_at)
    WHERE approval_id IS NOT NULL AND used_at IS NULL;

CREATE TABLE book_versions (
    market   text PRIMARY KEY CHECK (market IN ('US', 'HK')),
    version  bigint NOT NULL DEFAULT 0
);
INSERT INTO book_versions (market) VALUES ('US'), ('HK');

-- The account an approval was judged against, and the book's version then: execution reuses it while the
-- book has not moved (one broker read fewer per order), and reads the account again otherwise.
ALTER TABLE risk_decisions ADD COLUMN book_version bigint;
ALTER TABLE risk_decisions ADD COLUMN account_cash numeric;
ALTER TABLE risk_decisions ADD COLUMN account_equity numeric;
ALTER TABLE risk_decisions ADD COLUMN account_buying_power numeric;
ALTER TABLE risk_decisions ADD COLUMN account_last_equity numeric;
ALTER TABLE risk_decisions ADD COLUMN account_currency text;

-- The quote an approval was judged against: execution reuses it while it is younger than quote_reuse_seconds
-- (a quote that recent is as fresh as the rules ask), and reads one again otherwise.
ALTER TABLE risk_decisions ADD COLUMN quote_bid numeric;
ALTER TABLE risk_decisions ADD COLUMN quote_ask numeric;
ALTER TABLE risk_decisions ADD COLUMN quote_last numeric;
ALTER TABLE risk_decisions ADD COLUMN quote_at timestamptz;
