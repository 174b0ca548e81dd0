//! Row and insert structs for every table of [`crate::db::schema`].
//!
//! Each table has a row struct (`Queryable` + `Selectable`, field order equal
//! to the column order, so both `select(Row::as_select())` and a plain
//! `load::<Row>()` work) and a `New...` struct for inserts that borrows its
//! text and leaves out the generated id (and `outbox.attempts`, which starts
//! at its default 0). No `check_for_backend`: every struct is used with
//! SQLite and PostgreSQL alike.
//!
//! The `New...` structs use `treat_none_as_default_value = false`: `None`
//! binds SQL `NULL` (every such column's default is `NULL` anyway), so each
//! insert is one fixed statement that diesel can cache, and a multi-row
//! insert (e.g. a batch of locations with `on_conflict_do_nothing`) stays a
//! single statement on SQLite too, which has no `DEFAULT` keyword in `VALUES`.
//!
//! The `*_purged` rows do not derive `Identifiable`: their key is `purge_id`
//! while their `id` field is the original row's id, which would make the
//! derived `id()` getter misleading.
//!
//! Secrets (`password_hash`, `device_token_hash`, `token_hash`) are skipped
//! when a row is serialized.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{
    channels, command_log, connection_log, device_models, events, files, geofence_vehicles,
    geofences, live_usage, locations, obd_records, outbox, plans, push_tokens, refresh_tokens,
    service_tokens, settings, status_snapshots, traffic, users, users_purged, vehicles,
    vehicles_purged,
};

/// A user account. `password_hash` is never serialized.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    #[serde(skip_serializing)]
    pub password_hash: String,
    pub role: String,
    pub email_verified_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A new row of `users`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = users)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub password_hash: &'a str,
    pub role: &'a str,
    pub email_verified_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A service plan: retention and quotas.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = plans)]
pub struct Plan {
    pub id: i64,
    pub name: String,
    pub retention_days: i32,
    pub storage_quota_bytes: i64,
    pub live_minutes_per_month: i32,
    pub is_default: bool,
    pub created_at: i64,
}

/// A new row of `plans`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = plans)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewPlan<'a> {
    pub name: &'a str,
    pub retention_days: i32,
    pub storage_quota_bytes: i64,
    pub live_minutes_per_month: i32,
    pub is_default: bool,
    pub created_at: i64,
}

/// A blackbox hardware model; `channels` is comma-separated.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = device_models)]
pub struct DeviceModel {
    pub id: i64,
    pub name: String,
    pub vendor: Option<String>,
    pub channels: String,
    pub created_at: i64,
}

/// A new row of `device_models`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = device_models)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewDeviceModel<'a> {
    pub name: &'a str,
    pub vendor: Option<&'a str>,
    pub channels: &'a str,
    pub created_at: i64,
}

/// A vehicle and its blackbox. `device_token_hash` is never serialized.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = vehicles)]
pub struct Vehicle {
    pub id: i64,
    pub owner_id: i64,
    pub plan_id: i64,
    pub model_id: Option<i64>,
    pub serial: String,
    pub name: String,
    #[serde(skip_serializing)]
    pub device_token_hash: String,
    pub last_seen_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A new row of `vehicles`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = vehicles)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewVehicle<'a> {
    pub owner_id: i64,
    pub plan_id: i64,
    pub model_id: Option<i64>,
    pub serial: &'a str,
    pub name: &'a str,
    pub device_token_hash: &'a str,
    pub last_seen_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A camera channel of a vehicle (e.g. an RTSP source).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = channels)]
pub struct Channel {
    pub id: i64,
    pub vehicle_id: i64,
    pub name: String,
    pub rtsp_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A new row of `channels`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = channels)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewChannel<'a> {
    pub vehicle_id: i64,
    pub name: &'a str,
    pub rtsp_url: Option<&'a str>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A rotating refresh token. `token_hash` is never serialized.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshToken {
    pub id: i64,
    pub user_id: i64,
    pub family_id: String,
    #[serde(skip_serializing)]
    pub token_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// A new row of `refresh_tokens`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = refresh_tokens)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewRefreshToken<'a> {
    pub user_id: i64,
    pub family_id: &'a str,
    pub token_hash: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub user_agent: Option<&'a str>,
    pub ip: Option<&'a str>,
}

/// A one-time token (`email_verify`, `password_reset`). `token_hash` is never serialized.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = service_tokens)]
pub struct ServiceToken {
    pub id: i64,
    pub user_id: i64,
    pub purpose: String,
    #[serde(skip_serializing)]
    pub token_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// A new row of `service_tokens`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = service_tokens)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewServiceToken<'a> {
    pub user_id: i64,
    pub purpose: &'a str,
    pub token_hash: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// A push (FCM) registration of a user's phone.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = push_tokens)]
pub struct PushToken {
    pub id: i64,
    pub user_id: i64,
    pub token: String,
    pub platform: String,
    pub device_name: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A new row of `push_tokens`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = push_tokens)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewPushToken<'a> {
    pub user_id: i64,
    pub token: &'a str,
    pub platform: &'a str,
    pub device_name: Option<&'a str>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A device event; `kind` is the SQL column `type`, `meta` JSON text.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = events)]
pub struct Event {
    pub id: i64,
    pub vehicle_id: i64,
    pub kind: String,
    pub t: i64,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub meta: Option<String>,
    pub received_at: i64,
}

/// A new row of `events`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = events)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewEvent<'a> {
    pub vehicle_id: i64,
    pub kind: &'a str,
    pub t: i64,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub meta: Option<&'a str>,
    pub received_at: i64,
}

/// A GPS point.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = locations)]
pub struct Location {
    pub id: i64,
    pub vehicle_id: i64,
    pub t: i64,
    pub lat: f64,
    pub lon: f64,
    pub speed: Option<f64>,
    pub heading: Option<f64>,
    pub altitude: Option<f64>,
}

/// A new row of `locations`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = locations)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewLocation {
    pub vehicle_id: i64,
    pub t: i64,
    pub lat: f64,
    pub lon: f64,
    pub speed: Option<f64>,
    pub heading: Option<f64>,
    pub altitude: Option<f64>,
}

/// An OBD reading; `data` is JSON text.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = obd_records)]
pub struct ObdRecord {
    pub id: i64,
    pub vehicle_id: i64,
    pub t: i64,
    pub data: String,
    pub received_at: i64,
}

/// A new row of `obd_records`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = obd_records)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewObdRecord<'a> {
    pub vehicle_id: i64,
    pub t: i64,
    pub data: &'a str,
    pub received_at: i64,
}

/// A device status report; `data` is JSON text.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = status_snapshots)]
pub struct StatusSnapshot {
    pub id: i64,
    pub vehicle_id: i64,
    pub t: i64,
    pub data: String,
    pub received_at: i64,
}

/// A new row of `status_snapshots`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = status_snapshots)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewStatusSnapshot<'a> {
    pub vehicle_id: i64,
    pub t: i64,
    pub data: &'a str,
    pub received_at: i64,
}

/// An uploaded file (clip, snapshot) under the storage directory.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = files)]
pub struct StoredFile {
    pub id: i64,
    pub vehicle_id: i64,
    pub kind: String,
    pub channel: Option<String>,
    pub path: String,
    pub size: i64,
    pub sha256: String,
    pub t: i64,
    pub event_id: Option<i64>,
    pub created_at: i64,
}

/// A new row of `files`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = files)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewStoredFile<'a> {
    pub vehicle_id: i64,
    pub kind: &'a str,
    pub channel: Option<&'a str>,
    pub path: &'a str,
    pub size: i64,
    pub sha256: &'a str,
    pub t: i64,
    pub event_id: Option<i64>,
    pub created_at: i64,
}

/// A geofence; `kind` is `circle` or `polygon`, `geometry` JSON text.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = geofences)]
pub struct Geofence {
    pub id: i64,
    pub owner_id: i64,
    pub name: String,
    pub kind: String,
    pub geometry: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A new row of `geofences`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = geofences)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewGeofence<'a> {
    pub owner_id: i64,
    pub name: &'a str,
    pub kind: &'a str,
    pub geometry: &'a str,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A vehicle watched by a geofence, and whether it was last inside.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = geofence_vehicles)]
#[diesel(primary_key(geofence_id, vehicle_id))]
pub struct GeofenceVehicle {
    pub geofence_id: i64,
    pub vehicle_id: i64,
    pub inside: Option<bool>,
    pub changed_at: Option<i64>,
}

/// A new row of `geofence_vehicles`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = geofence_vehicles)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewGeofenceVehicle {
    pub geofence_id: i64,
    pub vehicle_id: i64,
    pub inside: Option<bool>,
    pub changed_at: Option<i64>,
}

/// Bytes of one kind for a vehicle on one UTC day (`day` is midnight in ms).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = traffic)]
pub struct Traffic {
    pub id: i64,
    pub vehicle_id: i64,
    pub day: i64,
    pub kind: String,
    pub bytes: i64,
}

/// A new row of `traffic`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = traffic)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewTraffic<'a> {
    pub vehicle_id: i64,
    pub day: i64,
    pub kind: &'a str,
    pub bytes: i64,
}

/// Seconds of live video for a vehicle on one UTC day (`day` is midnight in ms).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = live_usage)]
pub struct LiveUsage {
    pub id: i64,
    pub vehicle_id: i64,
    pub day: i64,
    pub seconds: i64,
}

/// A new row of `live_usage`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = live_usage)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewLiveUsage {
    pub vehicle_id: i64,
    pub day: i64,
    pub seconds: i64,
}

/// A device connect or disconnect (`kind`).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = connection_log)]
pub struct ConnectionLogEntry {
    pub id: i64,
    pub vehicle_id: i64,
    pub node_id: String,
    pub remote_addr: Option<String>,
    pub kind: String,
    pub reason: Option<String>,
    pub t: i64,
}

/// A new row of `connection_log`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = connection_log)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewConnectionLogEntry<'a> {
    pub vehicle_id: i64,
    pub node_id: &'a str,
    pub remote_addr: Option<&'a str>,
    pub kind: &'a str,
    pub reason: Option<&'a str>,
    pub t: i64,
}

/// A command sent to a device; `args` and `result` are JSON text.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = command_log)]
pub struct CommandLogEntry {
    pub id: i64,
    pub vehicle_id: i64,
    pub user_id: Option<i64>,
    pub name: String,
    pub args: String,
    pub status: String,
    pub result: Option<String>,
    pub created_at: i64,
    pub completed_at: Option<i64>,
}

/// A new row of `command_log`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = command_log)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewCommandLogEntry<'a> {
    pub vehicle_id: i64,
    pub user_id: Option<i64>,
    pub name: &'a str,
    pub args: &'a str,
    pub status: &'a str,
    pub result: Option<&'a str>,
    pub created_at: i64,
    pub completed_at: Option<i64>,
}

/// A notification to deliver (push, email, webhook). New items start at `attempts` 0 (the column default).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = outbox)]
pub struct OutboxItem {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub done_at: Option<i64>,
}

/// A new row of `outbox`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = outbox)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewOutboxItem<'a> {
    pub kind: &'a str,
    pub payload: &'a str,
    pub next_attempt_at: i64,
    pub last_error: Option<&'a str>,
    pub created_at: i64,
    pub done_at: Option<i64>,
}

/// A backup copy of a deleted user; `id` is the original id. `password_hash` is never serialized.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = users_purged)]
pub struct PurgedUser {
    pub purge_id: i64,
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    #[serde(skip_serializing)]
    pub password_hash: String,
    pub role: String,
    pub email_verified_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub purged_at: i64,
}

/// A new row of `users_purged`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = users_purged)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewPurgedUser<'a> {
    pub id: i64,
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub password_hash: &'a str,
    pub role: &'a str,
    pub email_verified_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub purged_at: i64,
}

/// A backup copy of a deleted vehicle; `id` is the original id. `device_token_hash` is never serialized.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = vehicles_purged)]
pub struct PurgedVehicle {
    pub purge_id: i64,
    pub id: i64,
    pub owner_id: i64,
    pub plan_id: i64,
    pub model_id: Option<i64>,
    pub serial: String,
    pub name: String,
    #[serde(skip_serializing)]
    pub device_token_hash: String,
    pub last_seen_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub purged_at: i64,
}

/// A new row of `vehicles_purged`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = vehicles_purged)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewPurgedVehicle<'a> {
    pub id: i64,
    pub owner_id: i64,
    pub plan_id: i64,
    pub model_id: Option<i64>,
    pub serial: &'a str,
    pub name: &'a str,
    pub device_token_hash: &'a str,
    pub last_seen_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub purged_at: i64,
}

/// A server-wide key/value setting.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = settings)]
#[diesel(primary_key(key))]
pub struct Setting {
    pub key: String,
    pub value: String,
    pub updated_at: i64,
}

/// A new row of `settings`.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = settings)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewSetting<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub updated_at: i64,
}
