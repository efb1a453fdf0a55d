-- The append-only event log. One row per event, in commit order.
-- Column meanings are documented in docs/audit-format.md.
CREATE TABLE events (
    position      INTEGER PRIMARY KEY CHECK (position >= 1),
    stream        TEXT    NOT NULL,
    revision      INTEGER NOT NULL CHECK (revision >= 0),
    event_id      TEXT    NOT NULL UNIQUE,
    event_type    TEXT    NOT NULL,
    event_version INTEGER NOT NULL,
    data          TEXT    NOT NULL,
    metadata      TEXT    NOT NULL,
    recorded_at   TEXT    NOT NULL,
    hash          BLOB    NOT NULL CHECK (length(hash) = 32),
    UNIQUE (stream, revision)
);

-- The log head: the last position and its hash. Every batch locks it first, so positions
-- and the chain are decided inside the database transaction, whoever the writer is.
CREATE TABLE log_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL,
    hash     BLOB    NOT NULL CHECK (length(hash) = 32)
);
INSERT INTO log_head (id, position, hash) VALUES (1, 0, zeroblob(32));

-- Where each catch-up subscription has got to.
CREATE TABLE subscription_checkpoints (
    name       TEXT    PRIMARY KEY,
    position   INTEGER NOT NULL CHECK (position >= 0),
    updated_at TEXT    NOT NULL
);

-- Append-only by construction: the database itself refuses edits and deletions. (An
-- attacker with file access can drop these; `shequ verify` still finds the edit.)
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only');
END;
