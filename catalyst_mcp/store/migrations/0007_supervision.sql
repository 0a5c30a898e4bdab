-- Supervision: who made each call (subject, role, client and its version), every call audited with its
-- duration (reads included), rows kept apart rather than deleted when the book is reset, indexes that keep
-- list_audit fast at millions of rows; directives from a supervisor to an agent, delivered once; the digest of
-- the one-time token that confirms a large or live order.

ALTER TABLE audit_events
    ADD COLUMN subject text,
    ADD COLUMN client_version text,
    ADD COLUMN kind text NOT NULL DEFAULT 'effect' CHECK (kind IN ('call', 'effect')),
    ADD COLUMN duration_ms integer,
    ADD COLUMN archived_at timestamptz;

CREATE INDEX audit_events_recent ON audit_events (at DESC, audit_id DESC);
CREATE INDEX audit_events_by_tool ON audit_events (tool, at DESC, audit_id DESC);
CREATE INDEX audit_events_by_subject ON audit_events (subject, at DESC, audit_id DESC);

CREATE TABLE directives (
    directive_id  bigserial PRIMARY KEY,
    agent_id      text NOT NULL,
    text          text NOT NULL CHECK (length(text) BETWEEN 1 AND 2000),
    sent_by       text NOT NULL,
    sent_at       timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    delivered_at  timestamptz,
    delivered_by  text
);

CREATE INDEX directives_pending ON directives (agent_id, directive_id) WHERE delivered_at IS NULL;

ALTER TABLE risk_decisions ADD COLUMN confirm_sha256 text;
