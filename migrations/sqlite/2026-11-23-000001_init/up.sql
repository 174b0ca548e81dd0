-- roadhub initial schema, SQLite dialect.
--
-- Kept column-for-column identical (names, order, nullability) with
-- migrations/postgres/2026-11-23-000001_init/up.sql so that one portable
-- src/db/schema.rs serves both backends.
--
-- Conventions: ids are 64-bit `INTEGER PRIMARY KEY AUTOINCREMENT` (AUTOINCREMENT
-- so that an id is never reused after deletion: tokens refer to ids); times
-- are BIGINT UTC Unix milliseconds; floats are REAL; booleans are BOOLEAN
-- stored as 0/1; JSON payloads are TEXT; hashes are lowercase hex TEXT.
-- Foreign keys are enforced only with `PRAGMA foreign_keys = ON`, which the
-- application must set on every connection.

CREATE TABLE users (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    email             TEXT    NOT NULL UNIQUE,
    name              TEXT,
    password_hash     TEXT    NOT NULL,
    role              TEXT    NOT NULL DEFAULT 'user',
    email_verified_at BIGINT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);

CREATE TABLE plans (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    name                   TEXT    NOT NULL UNIQUE,
    retention_days         INTEGER NOT NULL,
    storage_quota_bytes    BIGINT  NOT NULL,
    live_minutes_per_month INTEGER NOT NULL,
    is_default             BOOLEAN NOT NULL DEFAULT 0,
    created_at             BIGINT  NOT NULL
);

INSERT INTO plans (name, retention_days, storage_quota_bytes, live_minutes_per_month, is_default, created_at)
VALUES ('free', 30, 1073741824, 60, 1, 0);

CREATE TABLE device_models (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT   NOT NULL UNIQUE,
    vendor     TEXT,
    channels   TEXT   NOT NULL DEFAULT 'front',
    created_at BIGINT NOT NULL
);

CREATE TABLE vehicles (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id          BIGINT NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    plan_id           BIGINT NOT NULL REFERENCES plans (id) ON DELETE RESTRICT,
    model_id          BIGINT REFERENCES device_models (id) ON DELETE SET NULL,
    serial            TEXT   NOT NULL UNIQUE,
    name              TEXT   NOT NULL,
    device_token_hash TEXT   NOT NULL UNIQUE,
    last_seen_at      BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX vehicles_owner_id_idx ON vehicles (owner_id);

CREATE TABLE channels (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    vehicle_id BIGINT NOT NULL REFERENCES vehicles (id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    rtsp_url   TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (vehicle_id, name)
);

CREATE TABLE refresh_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id  TEXT   NOT NULL,
    token_hash TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT,
    user_agent TEXT,
    ip         TEXT
);
CREATE INDEX refresh_tokens_family_id_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_id_idx ON refresh_tokens (user_id);

CREATE TABLE service_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT   NOT NULL,
    token_hash TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX service_tokens_user_id_idx ON service_tokens (user_id);

CREATE TABLE push_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token       TEXT   NOT NULL UNIQUE,
    platform    TEXT   NOT NULL,
    device_name TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX push_tokens_user_id_idx ON push_tokens (user_id);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    vehicle_id  BIGINT NOT NULL REFERENCES vehicles (id) ON DELETE CASCADE,
    type        TEXT   NOT NULL,
    t           BIGINT NOT NULL,
    lat         REAL,
    lon         REAL,
    meta        TEXT,
    received_at BIGINT NOT NULL
);
CREATE INDEX events_vehicle_id_t_idx ON events (vehicle_id, t);

CREATE TABLE locations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    vehicle_id BIGINT NOT NULL REFERENCES vehicles (id) ON DELETE CASCADE,
    t          BIGINT NOT NULL,
    lat        REAL   NOT NULL,
    lon        REAL   NOT NULL,
    speed      REAL,
    heading    REAL,
    altitude   REAL
);
CREATE UNIQUE INDEX locations_vehicle_id_t_key ON locations (vehicle_id, t);

CREATE TABLE obd_records (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    vehicle_id  BIGINT NOT NULL REFERENCES vehicles (id) ON DELETE CASCADE,
    t           BIGINT NOT NULL,
    data        TEXT   NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX obd_records_vehicle_id_t_idx ON obd_records (vehicle_id, t);

CREATE TABLE status_snapshots (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    vehicle_id  BIGINT NOT NULL REFERENCES vehicles (id) ON DELETE CASCADE,
    t           BIGINT NOT NULL,
    data        TEXT   NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX status_snapshots_vehicle_id_t_idx ON status_snapshots (vehicle_id, t);

CREATE TABLE files (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    vehicle_id BIGINT NOT NULL REFERENCES vehicles (id) ON DELETE CASCADE,
    kind       TEXT   NOT NULL,
    channel    TEXT,
    path       TEXT   NOT NULL,
    size       BIGINT NOT NULL,
    sha256     TEXT   NOT NULL,
    t          BIGINT NOT NULL,
    event_id   BIGINT REFERENCES events (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX files_vehicle_id_t_idx ON files (vehicle_id, t);
CREATE INDEX files_event_id_idx ON files (event_id);

CREATE TABLE geofences (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id   BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    geometry   TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX geofences_owner_id_idx ON geofences (owner_id);

CREATE TABLE geofence_vehicles (
    geofence_id BIGINT NOT NULL REFERENCES geofences (id) ON DELETE CASCADE,
    vehicle_id  BIGINT NOT NULL REFERENCES vehicles (id) ON DELETE CASCADE,
    inside      BOOLEAN,
    changed_at  BIGINT,
    PRIMARY KEY (geofence_id, vehicle_id)
);
CREATE INDEX geofence_vehicles_vehicle_id_idx ON geofence_vehicles (vehicle_id);

CREATE TABLE traffic (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    vehicle_id BIGINT NOT NULL REFERENCES vehicles (id) ON DELETE CASCADE,
    day        BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    bytes      BIGINT NOT NULL DEFAULT 0,
    UNIQUE (vehicle_id, day, kind)
);

CREATE TABLE live_usage (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    vehicle_id BIGINT NOT NULL REFERENCES vehicles (id) ON DELETE CASCADE,
    day        BIGINT NOT NULL,
    seconds    BIGINT NOT NULL DEFAULT 0,
    UNIQUE (vehicle_id, day)
);

CREATE TABLE connection_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    vehicle_id  BIGINT NOT NULL REFERENCES vehicles (id) ON DELETE CASCADE,
    node_id     TEXT   NOT NULL,
    remote_addr TEXT,
    kind        TEXT   NOT NULL,
    reason      TEXT,
    t           BIGINT NOT NULL
);
CREATE INDEX connection_log_vehicle_id_t_idx ON connection_log (vehicle_id, t);

CREATE TABLE command_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    vehicle_id   BIGINT NOT NULL REFERENCES vehicles (id) ON DELETE CASCADE,
    user_id      BIGINT REFERENCES users (id) ON DELETE SET NULL,
    name         TEXT   NOT NULL,
    args         TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    result       TEXT,
    created_at   BIGINT NOT NULL,
    completed_at BIGINT
);
CREATE INDEX command_log_vehicle_id_created_at_idx ON command_log (vehicle_id, created_at);
CREATE INDEX command_log_user_id_idx ON command_log (user_id);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    done_at         BIGINT
);
CREATE INDEX outbox_done_at_next_attempt_at_idx ON outbox (done_at, next_attempt_at);

-- Backup copies of deleted rows. No foreign keys: the originals are gone.
CREATE TABLE users_purged (
    purge_id          INTEGER PRIMARY KEY AUTOINCREMENT,
    id                BIGINT NOT NULL,
    email             TEXT   NOT NULL,
    name              TEXT,
    password_hash     TEXT   NOT NULL,
    role              TEXT   NOT NULL,
    email_verified_at BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    purged_at         BIGINT NOT NULL
);
CREATE INDEX users_purged_id_idx ON users_purged (id);

CREATE TABLE vehicles_purged (
    purge_id          INTEGER PRIMARY KEY AUTOINCREMENT,
    id                BIGINT NOT NULL,
    owner_id          BIGINT NOT NULL,
    plan_id           BIGINT NOT NULL,
    model_id          BIGINT,
    serial            TEXT   NOT NULL,
    name              TEXT   NOT NULL,
    device_token_hash TEXT   NOT NULL,
    last_seen_at      BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    purged_at         BIGINT NOT NULL
);
CREATE INDEX vehicles_purged_id_idx ON vehicles_purged (id);
CREATE INDEX vehicles_purged_owner_id_idx ON vehicles_purged (owner_id);

CREATE TABLE settings (
    key        TEXT   NOT NULL PRIMARY KEY,
    value      TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
