-- The simulated exchange behaves like Alpaca: protective legs (a stop and a take-profit limit, held until their
-- entry has filled, one-cancels-other), prices an operator pins for every process at once, and four fault modes
-- on seven operations.

-- A stop leg has order_type 'stop' and its stop_price. A leg's parent_id is its entry (a bracket) or, for a
-- protective pair placed on a held position, the take-profit limit. Orders that cancel each other when one of
-- them fills share an oco_group. Status 'held': a leg waiting for its entry to fill completely.
ALTER TABLE sim.orders
    ADD COLUMN stop_price numeric,
    ADD COLUMN parent_id  text REFERENCES sim.orders (broker_order_id),
    ADD COLUMN oco_group  text,
    ADD CONSTRAINT orders_status_check
        CHECK (status IN ('held', 'accepted', 'partially_filled', 'filled', 'cancelled', 'rejected')),
    ADD CONSTRAINT orders_type_check
        CHECK (order_type IN ('market', 'limit', 'stop') AND (order_type = 'stop') = (stop_price IS NOT NULL));

CREATE INDEX sim_orders_open ON sim.orders (market, submitted_at)
    WHERE status IN ('held', 'accepted', 'partially_filled');
CREATE INDEX sim_orders_by_parent ON sim.orders (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX sim_orders_by_oco_group ON sim.orders (oco_group) WHERE oco_group IS NOT NULL;
CREATE INDEX sim_fills_by_order ON sim.fills (broker_order_id);

-- A pinned last price: the symbol's quotes are built around it instead of the model's path.
CREATE TABLE sim.prices (
    market  text NOT NULL,
    symbol  text NOT NULL,
    price   numeric NOT NULL CHECK (price > 0),
    PRIMARY KEY (market, symbol)
);

-- Faults: 'error' (refused, nothing happened), 'timeout' (no answer, nothing happened), 'lost-reply' (the
-- broker acted, the answer was lost), 'empty' (reads only: an empty answer).
ALTER TABLE sim.faults RENAME COLUMN kind TO mode;
ALTER TABLE sim.faults DROP CONSTRAINT faults_operation_check, DROP CONSTRAINT faults_kind_check;
DELETE FROM sim.faults WHERE operation = 'cancel_order' AND mode = 'empty';
UPDATE sim.faults SET operation = 'cancel' WHERE operation = 'cancel_order';
ALTER TABLE sim.faults
    ADD CONSTRAINT faults_operation_check CHECK (operation IN
        ('submit', 'get_order', 'get_orders', 'get_positions', 'get_account', 'cancel', 'quote')),
    ADD CONSTRAINT faults_mode_check CHECK (mode IN ('error', 'timeout', 'lost-reply', 'empty')),
    ADD CONSTRAINT faults_empty_reads_only
        CHECK (mode <> 'empty' OR operation IN ('get_order', 'get_orders', 'get_positions', 'quote'));
