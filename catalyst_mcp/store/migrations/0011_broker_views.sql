-- What the broker last said of the account and of each symbol's quote, kept so that check_risk and
-- execute_trade need not ask again while it is recent and nothing it depends on moved (ADR 0012).
--
-- An account view is true for one version of the book: booking a fill carries it to the next version in the
-- same statement (a buy's cost taken from cash and buying power; a sell's proceeds are not added, which only
-- errs on the safe side), and any other change of what the broker holds for us (a sync that found
-- differences) leaves it behind, so it is read again. The epoch moves when something outside our orders
-- changes the broker's side (the simulated exchange's controls: prices, faults, positions, fills): every view
-- taken before is stale then. Both are also bounded by age (account_reuse_seconds, quote_reuse_seconds).

ALTER TABLE book_versions ADD COLUMN epoch bigint NOT NULL DEFAULT 0;

CREATE TABLE account_views (
    market        text PRIMARY KEY CHECK (market IN ('US', 'HK')),
    cash          numeric NOT NULL,
    equity        numeric NOT NULL,
    buying_power  numeric NOT NULL,
    last_equity   numeric,
    currency      text NOT NULL,
    read_at       timestamptz NOT NULL,
    version       bigint NOT NULL,
    epoch         bigint NOT NULL
);

CREATE TABLE quote_views (
    market     text NOT NULL CHECK (market IN ('US', 'HK')),
    symbol     text NOT NULL,
    bid        numeric NOT NULL,
    ask        numeric NOT NULL,
    last       numeric NOT NULL,
    bid_size   numeric NOT NULL,
    ask_size   numeric NOT NULL,
    quoted_at  timestamptz NOT NULL,
    read_at    timestamptz NOT NULL,
    epoch      bigint NOT NULL,
    PRIMARY KEY (market, symbol)
);

-- The simulated exchange's controls (any process) move the epoch in the transaction of their change: a price
-- pinned, moved or released, a fault armed or re-armed. A fault counting down or ending as it is used, and
-- faults cleared, leave it: no view was taken from a faulted read.
CREATE FUNCTION sim.moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE public.book_versions SET epoch = epoch + 1
    WHERE market = CASE WHEN TG_OP = 'DELETE' THEN OLD.market ELSE NEW.market END;
    RETURN NULL;
END $$;
CREATE TRIGGER prices_moved AFTER INSERT OR UPDATE OR DELETE ON sim.prices
    FOR EACH ROW EXECUTE FUNCTION sim.moved();
CREATE TRIGGER faults_armed AFTER INSERT ON sim.faults
    FOR EACH ROW EXECUTE FUNCTION sim.moved();
CREATE TRIGGER faults_rearmed AFTER UPDATE ON sim.faults
    FOR EACH ROW WHEN (NEW.mode IS DISTINCT FROM OLD.mode OR NEW.remaining IS DISTINCT FROM OLD.remaining - 1)
    EXECUTE FUNCTION sim.moved();
