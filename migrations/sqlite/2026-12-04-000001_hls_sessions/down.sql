DROP TABLE IF EXISTS hls_sessions;
