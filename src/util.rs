//! Small helpers shared by every module: clock, random secrets, hashing,
//! the peer address of a connection.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

/// Current time as Unix milliseconds (UTC), the time unit of the whole schema.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A random secret of `bytes` bytes, base64url without padding, with a
/// readable prefix (`rt_` refresh token, `dt_` device token) so a leaked
/// secret can be recognised by secret scanners and by people.
pub fn random_token(prefix: &str, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    let mut out = String::with_capacity(prefix.len() + bytes * 4 / 3 + 2);
    out.push_str(prefix);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(&buf, &mut out);
    out
}

/// Lowercase hex SHA-256 of a secret: how tokens are stored (never in clear).
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compare two secrets (or their hashes) in constant time.
pub fn secure_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_prefixed_and_hash_stably() {
        let a = random_token("rt_", 32);
        let b = random_token("rt_", 32);
        assert!(a.starts_with("rt_"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 43);
        assert_eq!(sha256_hex(&a), sha256_hex(&a));
        assert_eq!(sha256_hex(&a).len(), 64);
        assert!(secure_eq(&a, &a.clone()));
        assert!(!secure_eq(&a, &b));
        assert!(!secure_eq("abc", "abcd"));
    }
}

/// The TCP peer of a connection, set by the HTTP server on every request
/// (a request extension) and read by the routes and the Socket.IO
/// transports.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);
