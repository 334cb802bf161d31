-- The example backend's telemetry database (idempotent; db_query's plan
-- test creates its database from this file too).
CREATE TABLE IF NOT EXISTS telemetry (
    session INTEGER NOT NULL,
    counter INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    temperature_c REAL NOT NULL,
    voltage_v REAL NOT NULL,
    current_a REAL NOT NULL,
    status INTEGER NOT NULL,
    stored_ms INTEGER NOT NULL,
    PRIMARY KEY (session, counter)
);
-- Time order with the primary key as tie-break: `latest` and `range`
-- read it in order (no temporary B-tree), `series` reads a time range.
CREATE INDEX IF NOT EXISTS telemetry_time_key ON telemetry (time_ms, session, counter);
DROP INDEX IF EXISTS telemetry_time;
-- Rows per session, kept by a trigger in the writer's transaction, so that
-- `count` reads one row per session instead of every row.
CREATE TABLE IF NOT EXISTS sessions (
    session INTEGER PRIMARY KEY,
    min_counter INTEGER NOT NULL,
    max_counter INTEGER NOT NULL,
    count INTEGER NOT NULL,
    newest_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_newest ON sessions (newest_ms);
CREATE TRIGGER IF NOT EXISTS telemetry_counts AFTER INSERT ON telemetry BEGIN
    INSERT INTO sessions (session, min_counter, max_counter, count, newest_ms)
    VALUES (NEW.session, NEW.counter, NEW.counter, 1, NEW.time_ms)
    ON CONFLICT (session) DO UPDATE SET
        min_counter = min(min_counter, NEW.counter),
        max_counter = max(max_counter, NEW.counter),
        count = count + 1,
        newest_ms = max(newest_ms, NEW.time_ms);
END;
