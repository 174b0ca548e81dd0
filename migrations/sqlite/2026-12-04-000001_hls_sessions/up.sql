-- HLS playback sessions: what an HLS player's playlist and segment URLs
-- carry (`?session=`) instead of the viewer's short-lived access token.
-- One row per first playlist request. `session_hash` is the SHA-256 (hex)
-- of the opaque session id; the id itself is never stored. A session is
-- bound to one stream (`vehicle_id`, `channel`), one user, and the login
-- (refresh-token family) its access token came from (`family_id`, NULL
-- for an access token issued before tokens named their login); it ends at
-- `expires_at` (slid forward while the player keeps fetching), when that
-- family is revoked, or with the user or the vehicle (cascade).
-- Kept identical in columns with the postgres migration of the same name.

CREATE TABLE hls_sessions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    session_hash TEXT   NOT NULL UNIQUE,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    vehicle_id   BIGINT NOT NULL REFERENCES vehicles (id) ON DELETE CASCADE,
    channel      TEXT   NOT NULL,
    family_id    TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX hls_sessions_user_id_idx ON hls_sessions (user_id);
CREATE INDEX hls_sessions_vehicle_id_idx ON hls_sessions (vehicle_id);
CREATE INDEX hls_sessions_expires_at_idx ON hls_sessions (expires_at);
