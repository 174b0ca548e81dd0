//! Accounts and credentials.
//!
//! - [`password`]: argon2id hashes, computed on the blocking pool.
//! - [`jwt`]: HS256 access tokens (`sub` = user id, `exp`, `iat`).
//! - [`secret`]: the JWT key: configured, or generated once and kept 0600.
//! - [`limiter`]: login/register rate limits per client address and account.
//! - [`account`]: account rules (email, password policy, names, serials)
//!   and device-token minting, shared by the REST API and the CLI.
//!
//! Refresh tokens and device tokens are opaque random strings; only their
//! SHA-256 is stored (see [`crate::db::queries::tokens`]).

pub mod account;
pub mod jwt;
pub mod limiter;
pub mod password;
pub mod secret;

pub use jwt::{AccessClaims, JwtKeys};
pub use limiter::AuthLimiter;
