-- Reconciliation: the simulated exchange's fault switch (outage drills) and the indexes behind the order
-- queries of sync_positions, get_orders and cancel_order.

-- An operation of the simulated exchange that fails ('error': the call raises) or answers with nothing
-- ('empty': no positions, no such order) for the next `remaining` calls, or until cleared when NULL.
CREATE TABLE sim.faults (
    market     text NOT NULL,
    operation  text NOT NULL
               CHECK (operation IN ('get_positions', 'get_order', 'cancel_order')),
    kind       text NOT NULL CHECK (kind IN ('error', 'empty')),
    remaining  integer CHECK (remaining IS NULL OR remaining > 0),
    PRIMARY KEY (market, operation)
);

CREATE INDEX orders_working ON orders (market, order_id)
    WHERE status IN ('pending', 'accepted', 'partially_filled');
CREATE INDEX orders_by_cycle ON orders (cycle_id);
CREATE INDEX fills_by_order ON fills (order_id);
