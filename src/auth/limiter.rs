//! Rate limits on login and register (governor, GCRA), keyed by client
//! address and by account (lowercased email): a password-guessing client
//! is slowed whether it spreads over accounts or over addresses.
//!
//! `limits.auth_attempts_per_minute = 0` turns the limits off.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Keyed limiters for authentication attempts.
#[derive(Clone)]
pub struct AuthLimiter {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    by_ip: DefaultKeyedRateLimiter<IpAddr>,
    by_account: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl AuthLimiter {
    pub fn new(attempts_per_minute: u32) -> Self {
        let inner = NonZeroU32::new(attempts_per_minute).map(|n| {
            let quota = Quota::per_minute(n).allow_burst(n);
            Arc::new(Inner {
                by_ip: RateLimiter::keyed(quota),
                by_account: RateLimiter::keyed(quota),
                clock: DefaultClock::default(),
            })
        });
        Self { inner }
    }

    /// Count one attempt from `ip` on `account`. `Err(secs)` when either is
    /// over its limit: the seconds until an attempt is allowed again.
    pub fn check(&self, ip: IpAddr, account: &str) -> Result<(), u64> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let wait = |not_until: governor::NotUntil<_>| {
            not_until.wait_time_from(inner.clock.now()).as_secs() + 1
        };
        inner.by_ip.check_key(&ip).map_err(wait)?;
        inner
            .by_account
            .check_key(&account.to_ascii_lowercase())
            .map_err(wait)?;
        Ok(())
    }

    /// Forget keys whose limits have fully recovered (bounds memory).
    pub fn prune(&self) {
        if let Some(inner) = &self.inner {
            inner.by_ip.retain_recent();
            inner.by_account.retain_recent();
            inner.by_ip.shrink_to_fit();
            inner.by_account.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_ip_and_per_account() {
        let l = AuthLimiter::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(l.check(a, "x@example.com").is_ok());
        assert!(l.check(a, "y@example.com").is_ok());
        let wait = l.check(a, "z@example.com").unwrap_err();
        assert!((1..=61).contains(&wait));
        // Another address, but the account x has one attempt left, then none.
        assert!(l.check(b, "X@example.com").is_ok());
        assert!(l.check(b, "x@example.com").is_err());
    }

    #[test]
    fn zero_is_unlimited() {
        let l = AuthLimiter::new(0);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..1000 {
            assert!(l.check(a, "x").is_ok());
        }
    }
}
