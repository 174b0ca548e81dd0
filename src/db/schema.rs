//! The database schema, written by hand, shared by both backends.
//!
//! One portable set of `diesel::table!` definitions serves SQLite and
//! PostgreSQL alike. It mirrors `migrations/sqlite/*/up.sql` and
//! `migrations/postgres/*/up.sql`, which are kept column-for-column identical
//! (names, order, nullability): change all three together.
//!
//! Only types that mean the same on both backends are used: `BigInt` (ids,
//! foreign keys, sizes, and every time: UTC Unix milliseconds, in columns
//! named `*_at` or `t`), `Integer`, `Double`, `Bool`, `Text` (also JSON
//! payloads and lowercase-hex hashes) and `Nullable<_>`. No `Binary`,
//! `Timestamp` or `Jsonb`.

diesel::table! {
    /// Accounts. `email` is stored lowercased; `role` defaults to `user`.
    users (id) {
        id -> BigInt,
        email -> Text,
        name -> Nullable<Text>,
        password_hash -> Text,
        role -> Text,
        email_verified_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    /// Service plans: retention and quotas. The migration seeds `free`, the default.
    plans (id) {
        id -> BigInt,
        name -> Text,
        retention_days -> Integer,
        storage_quota_bytes -> BigInt,
        live_minutes_per_month -> Integer,
        is_default -> Bool,
        created_at -> BigInt,
    }
}

diesel::table! {
    /// Blackbox hardware models; `channels` is a comma-separated list of camera names.
    device_models (id) {
        id -> BigInt,
        name -> Text,
        vendor -> Nullable<Text>,
        channels -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    /// A vehicle and its blackbox. `device_token_hash` is the hash of the device token.
    vehicles (id) {
        id -> BigInt,
        owner_id -> BigInt,
        plan_id -> BigInt,
        model_id -> Nullable<BigInt>,
        serial -> Text,
        name -> Text,
        device_token_hash -> Text,
        last_seen_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    /// Per-vehicle camera channels (e.g. an RTSP source); unique per (vehicle_id, name).
    channels (id) {
        id -> BigInt,
        vehicle_id -> BigInt,
        name -> Text,
        rtsp_url -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    /// Rotating refresh tokens, grouped by login `family_id` for reuse detection.
    refresh_tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        family_id -> Text,
        token_hash -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
    }
}

diesel::table! {
    /// One-time tokens; `purpose` is `email_verify` or `password_reset`.
    service_tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        purpose -> Text,
        token_hash -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// Push (FCM) registrations of a user's phones.
    push_tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        token -> Text,
        platform -> Text,
        device_name -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    /// Device events (impact, parking motion, ...). `meta` is JSON text.
    events (id) {
        id -> BigInt,
        vehicle_id -> BigInt,
        /// The event type, as the device sent it (SQL column `type`).
        #[sql_name = "type"]
        kind -> Text,
        t -> BigInt,
        lat -> Nullable<Double>,
        lon -> Nullable<Double>,
        meta -> Nullable<Text>,
        received_at -> BigInt,
    }
}

diesel::table! {
    /// GPS points; unique per (vehicle_id, t), so a resent batch is idempotent.
    locations (id) {
        id -> BigInt,
        vehicle_id -> BigInt,
        t -> BigInt,
        lat -> Double,
        lon -> Double,
        speed -> Nullable<Double>,
        heading -> Nullable<Double>,
        altitude -> Nullable<Double>,
    }
}

diesel::table! {
    /// OBD readings; `data` is JSON text.
    obd_records (id) {
        id -> BigInt,
        vehicle_id -> BigInt,
        t -> BigInt,
        data -> Text,
        received_at -> BigInt,
    }
}

diesel::table! {
    /// Device status reports; `data` is JSON text.
    status_snapshots (id) {
        id -> BigInt,
        vehicle_id -> BigInt,
        t -> BigInt,
        data -> Text,
        received_at -> BigInt,
    }
}

diesel::table! {
    /// Uploaded files (clips, snapshots) under the storage directory.
    files (id) {
        id -> BigInt,
        vehicle_id -> BigInt,
        kind -> Text,
        channel -> Nullable<Text>,
        path -> Text,
        size -> BigInt,
        sha256 -> Text,
        t -> BigInt,
        event_id -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    /// Geofences; `kind` is `circle` or `polygon`, `geometry` is JSON text.
    geofences (id) {
        id -> BigInt,
        owner_id -> BigInt,
        name -> Text,
        kind -> Text,
        geometry -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    /// Which vehicles a geofence watches, and whether each was last inside.
    geofence_vehicles (geofence_id, vehicle_id) {
        geofence_id -> BigInt,
        vehicle_id -> BigInt,
        inside -> Nullable<Bool>,
        changed_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// Bytes per vehicle, UTC day (midnight, in ms) and kind; unique per (vehicle_id, day, kind).
    traffic (id) {
        id -> BigInt,
        vehicle_id -> BigInt,
        day -> BigInt,
        kind -> Text,
        bytes -> BigInt,
    }
}

diesel::table! {
    /// Seconds of live video per vehicle and UTC day (midnight, in ms); unique per (vehicle_id, day).
    live_usage (id) {
        id -> BigInt,
        vehicle_id -> BigInt,
        day -> BigInt,
        seconds -> BigInt,
    }
}

diesel::table! {
    /// Device connects and disconnects; `kind` is `connect` or `disconnect`.
    connection_log (id) {
        id -> BigInt,
        vehicle_id -> BigInt,
        node_id -> Text,
        remote_addr -> Nullable<Text>,
        kind -> Text,
        reason -> Nullable<Text>,
        t -> BigInt,
    }
}

diesel::table! {
    /// Commands sent to devices; `args` and `result` are JSON text.
    command_log (id) {
        id -> BigInt,
        vehicle_id -> BigInt,
        user_id -> Nullable<BigInt>,
        name -> Text,
        args -> Text,
        status -> Text,
        result -> Nullable<Text>,
        created_at -> BigInt,
        completed_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// Notifications to deliver (push, email, webhook), retried until `done_at` is set.
    outbox (id) {
        id -> BigInt,
        kind -> Text,
        payload -> Text,
        attempts -> Integer,
        next_attempt_at -> BigInt,
        last_error -> Nullable<Text>,
        created_at -> BigInt,
        done_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// Backup copies of deleted users; `id` is the original id.
    users_purged (purge_id) {
        purge_id -> BigInt,
        id -> BigInt,
        email -> Text,
        name -> Nullable<Text>,
        password_hash -> Text,
        role -> Text,
        email_verified_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        purged_at -> BigInt,
    }
}

diesel::table! {
    /// Backup copies of deleted vehicles; `id` is the original id.
    vehicles_purged (purge_id) {
        purge_id -> BigInt,
        id -> BigInt,
        owner_id -> BigInt,
        plan_id -> BigInt,
        model_id -> Nullable<BigInt>,
        serial -> Text,
        name -> Text,
        device_token_hash -> Text,
        last_seen_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        purged_at -> BigInt,
    }
}

diesel::table! {
    /// Server-wide key/value settings.
    settings (key) {
        key -> Text,
        value -> Text,
        updated_at -> BigInt,
    }
}

diesel::joinable!(vehicles -> users (owner_id));
diesel::joinable!(vehicles -> plans (plan_id));
diesel::joinable!(vehicles -> device_models (model_id));
diesel::joinable!(channels -> vehicles (vehicle_id));
diesel::table! {
    /// HLS playback sessions: `?session=` of HLS URLs, stored as `session_hash`
    /// (SHA-256 hex); bound to one stream, one user and one login (`family_id`,
    /// the refresh-token family; NULL for tokens that named no login).
    hls_sessions (id) {
        id -> BigInt,
        session_hash -> Text,
        user_id -> BigInt,
        vehicle_id -> BigInt,
        channel -> Text,
        family_id -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(service_tokens -> users (user_id));
diesel::joinable!(push_tokens -> users (user_id));
diesel::joinable!(events -> vehicles (vehicle_id));
diesel::joinable!(locations -> vehicles (vehicle_id));
diesel::joinable!(obd_records -> vehicles (vehicle_id));
diesel::joinable!(status_snapshots -> vehicles (vehicle_id));
diesel::joinable!(files -> vehicles (vehicle_id));
diesel::joinable!(files -> events (event_id));
diesel::joinable!(geofences -> users (owner_id));
diesel::joinable!(geofence_vehicles -> geofences (geofence_id));
diesel::joinable!(geofence_vehicles -> vehicles (vehicle_id));
diesel::joinable!(traffic -> vehicles (vehicle_id));
diesel::joinable!(live_usage -> vehicles (vehicle_id));
diesel::joinable!(connection_log -> vehicles (vehicle_id));
diesel::joinable!(command_log -> vehicles (vehicle_id));
diesel::joinable!(command_log -> users (user_id));
diesel::joinable!(hls_sessions -> users (user_id));
diesel::joinable!(hls_sessions -> vehicles (vehicle_id));

diesel::allow_tables_to_appear_in_same_query!(
    hls_sessions,
    users,
    plans,
    device_models,
    vehicles,
    channels,
    refresh_tokens,
    service_tokens,
    push_tokens,
    events,
    locations,
    obd_records,
    status_snapshots,
    files,
    geofences,
    geofence_vehicles,
    traffic,
    live_usage,
    connection_log,
    command_log,
    outbox,
    users_purged,
    vehicles_purged,
    settings,
);
