//! The JWT signing key: `auth.jwt_secret` when configured; otherwise one is
//! generated on first start and kept in `node.data_dir/jwt_secret`, readable
//! by the owner only (mode 0600), so tokens survive restarts.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::config::Config;

/// Where the generated secret lives.
pub fn secret_path(config: &Config) -> PathBuf {
    Path::new(&config.node.data_dir).join("jwt_secret")
}

/// The configured secret, or the persisted one, or a new one (persisted).
pub fn load_or_create(config: &Config) -> Result<String, String> {
    if let Some(secret) = &config.auth.jwt_secret {
        return Ok(secret.clone());
    }
    let path = secret_path(config);
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= 32 => {
            tracing::info!(path = %path.display(), "using the JWT secret kept on disk");
            return Ok(text.trim().to_string());
        }
        Ok(_) => {
            return Err(format!(
                "{} is too short to be a JWT secret",
                path.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let secret = crate::util::random_token("", 48);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(secret.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "no auth.jwt_secret configured: generated one and saved it (set auth.jwt_secret, the same on every node, for a cluster)"
    );
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn generated_once_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.node.data_dir = dir.path().join("data").to_string_lossy().into_owned();
        let first = load_or_create(&config).unwrap();
        let mode = std::fs::metadata(secret_path(&config))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(&config).unwrap(), first);
        config.auth.jwt_secret = Some("c".repeat(32));
        assert_eq!(load_or_create(&config).unwrap(), "c".repeat(32));
    }
}
