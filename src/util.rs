//! Small helpers shared by every module: clock, UTC calendar days, random
//! secrets, hashing, the peer address of a connection.

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

// UTC calendar days and months on the Unix-ms timeline (usage counts
// are kept per UTC day and checked per UTC month).

/// A day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// The UTC midnight (Unix ms) of the day holding `t_ms`.
pub fn day_start_ms(t_ms: i64) -> i64 {
    t_ms.div_euclid(DAY_MS) * DAY_MS
}

/// The civil date (year, month 1-12, day 1-31) of day `days` since
/// 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The UTC midnight (Unix ms) of the first day of the month holding `t_ms`.
pub fn month_start_ms(t_ms: i64) -> i64 {
    let days = t_ms.div_euclid(DAY_MS);
    let (_, _, day_of_month) = civil(days);
    (days - (day_of_month - 1)) * DAY_MS
}

/// The calendar date `YYYY-MM-DD` of a UTC midnight.
pub fn date_of(day_ms: i64) -> String {
    let (y, m, d) = civil(day_ms.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
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

    #[test]
    fn calendar() {
        // 2026-12-01T10:00:00Z
        let t = 1_796_119_200_000;
        assert_eq!(date_of(day_start_ms(t)), "2026-12-01");
        assert_eq!(month_start_ms(t), day_start_ms(t));
        // 2024-02-29T23:59:59Z: leap day; the month began 2024-02-01.
        let t = 1_709_251_199_000;
        assert_eq!(date_of(day_start_ms(t)), "2024-02-29");
        assert_eq!(date_of(month_start_ms(t)), "2024-02-01");
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(month_start_ms(-1)), "1969-12-01");
        // Every day of 2025 maps into its own month.
        let jan1 = 1_735_689_600_000;
        for d in 0..365 {
            let t = jan1 + d * DAY_MS + 1234;
            let m = month_start_ms(t);
            assert!(m <= t && t - m < 31 * DAY_MS);
            assert!(date_of(m).ends_with("-01"), "{}", date_of(m));
            assert_eq!(&date_of(m)[..7], &date_of(day_start_ms(t))[..7]);
        }
    }
}

/// The TCP peer of a connection, set by the HTTP server on every request
/// (a request extension) and read by the routes and the Socket.IO
/// transports.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);
