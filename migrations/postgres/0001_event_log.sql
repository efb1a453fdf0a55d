-- The append-only event log. One row per event, in commit order.
-- Column meanings are documented in docs/audit-format.md.
CREATE TABLE events (
    position      BIGINT      PRIMARY KEY CHECK (position >= 1),
    stream        TEXT        NOT NULL,
    revision      BIGINT      NOT NULL CHECK (revision >= 0),
    event_id      UUID        NOT NULL UNIQUE,
    event_type    TEXT        NOT NULL,
    event_version INTEGER     NOT NULL,
    -- JSON as text, not jsonb: the bytes are hashed and must come back exactly.
    data          TEXT        NOT NULL,
    metadata      TEXT        NOT NULL,
    recorded_at   TIMESTAMPTZ NOT NULL,
    hash          BYTEA       NOT NULL CHECK (length(hash) = 32),
    UNIQUE (stream, revision)
);

-- The log head: the last position and its hash. Every batch locks this row first, so
-- several `shequ serve` processes can share one database and still produce one gap-free,
-- commit-ordered, hash-chained log.
CREATE TABLE log_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position BIGINT  NOT NULL,
    hash     BYTEA   NOT NULL CHECK (length(hash) = 32)
);
INSERT INTO log_head (id, position, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- The first step of every batch, in one round trip: lock the head, then look up what the
-- batch touches (each stream's last revision; event ids already in the log, for idempotent
-- retries). VOLATILE, so each query below takes a fresh snapshot after the lock is held and
-- sees every batch committed before ours, whichever process wrote it.
CREATE FUNCTION shequ_lock_head_and_look_up(touched_streams TEXT[], touched_event_ids UUID[])
RETURNS TABLE (found_kind TEXT, found_stream TEXT, found_event_id UUID, found_position BIGINT,
               found_revision BIGINT, found_recorded_at TIMESTAMPTZ, found_hash BYTEA)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY
        SELECT 'head'::TEXT, NULL::TEXT, NULL::UUID, head.position, NULL::BIGINT, NULL::TIMESTAMPTZ, head.hash
        FROM log_head AS head WHERE head.id = 1 FOR UPDATE;
    -- One backward index probe per stream: MAX(..) GROUP BY would read every revision.
    RETURN QUERY
        SELECT 'stream'::TEXT, touched.stream, NULL::UUID, NULL::BIGINT, last.revision, NULL::TIMESTAMPTZ, NULL::BYTEA
        FROM UNNEST(touched_streams) AS touched(stream)
        CROSS JOIN LATERAL (SELECT events.revision FROM events WHERE events.stream = touched.stream
                            ORDER BY events.revision DESC LIMIT 1) AS last;
    RETURN QUERY
        SELECT 'event'::TEXT, events.stream, events.event_id, events.position, events.revision,
               events.recorded_at, NULL::BYTEA
        FROM events WHERE events.event_id = ANY (touched_event_ids);
END;
$$;

-- Where each catch-up subscription has got to.
CREATE TABLE subscription_checkpoints (
    name       TEXT        PRIMARY KEY,
    position   BIGINT      NOT NULL CHECK (position >= 0),
    updated_at TIMESTAMPTZ NOT NULL
);

-- Append-only by construction: the database itself refuses edits and deletions. (A
-- superuser can drop this; `shequ verify` still finds the edit.)
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only';
END;
$$;
CREATE TRIGGER events_no_update_or_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
