-- The market scanner: every scan_market call, with the cycle it ran in (if any), where its data came from, the
-- tier it used (none when no tier found anything), how many symbols it considered, passed the filters and
-- qualified, and the candidates it returned (best first, decimals as plain strings).

CREATE TABLE scans (
    scan_id         bigserial PRIMARY KEY,
    market          text NOT NULL CHECK (market IN ('US', 'HK')),
    cycle_id        text REFERENCES cycles (cycle_id),
    at              timestamptz NOT NULL,
    source          text NOT NULL,
    tier            text,
    tier_level      integer CHECK (tier_level >= 1),
    tier_count      integer NOT NULL CHECK (tier_count >= 1),
    considered      integer NOT NULL CHECK (considered >= 0),
    passed_filters  integer NOT NULL CHECK (passed_filters BETWEEN 0 AND considered),
    qualified       integer NOT NULL CHECK (qualified BETWEEN 0 AND passed_filters),
    candidates      jsonb NOT NULL CHECK (jsonb_typeof(candidates) = 'array'),
    CHECK ((tier IS NULL) = (tier_level IS NULL)),
    CHECK (tier_level IS NULL OR tier_level <= tier_count),
    CHECK (tier IS NOT NULL OR qualified = 0)
);

CREATE INDEX scans_by_cycle ON scans (cycle_id) WHERE cycle_id IS NOT NULL;
CREATE INDEX scans_by_market_at ON scans (market, at DESC);
