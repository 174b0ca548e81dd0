-- Reverse of up.sql: drop every table in reverse order of creation
-- (their indexes go with them).
DROP TABLE IF EXISTS settings;
DROP TABLE IF EXISTS vehicles_purged;
DROP TABLE IF EXISTS users_purged;
DROP TABLE IF EXISTS outbox;
DROP TABLE IF EXISTS command_log;
DROP TABLE IF EXISTS connection_log;
DROP TABLE IF EXISTS live_usage;
DROP TABLE IF EXISTS traffic;
DROP TABLE IF EXISTS geofence_vehicles;
DROP TABLE IF EXISTS geofences;
DROP TABLE IF EXISTS files;
DROP TABLE IF EXISTS status_snapshots;
DROP TABLE IF EXISTS obd_records;
DROP TABLE IF EXISTS locations;
DROP TABLE IF EXISTS events;
DROP TABLE IF EXISTS push_tokens;
DROP TABLE IF EXISTS service_tokens;
DROP TABLE IF EXISTS refresh_tokens;
DROP TABLE IF EXISTS channels;
DROP TABLE IF EXISTS vehicles;
DROP TABLE IF EXISTS device_models;
DROP TABLE IF EXISTS plans;
DROP TABLE IF EXISTS users;
