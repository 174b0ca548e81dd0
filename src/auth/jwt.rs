//! Access tokens: JWT (RFC 7519) signed with HS256.
//!
//! Claims: `sub` (user id as a string), `iat`, `exp` (seconds), `typ`
//! (`access`), and `sid`, the login the token came from (its refresh-token
//! family id): what an HLS playback session is bound to, so that logout
//! ends it. Tokens without `sid` (issued before it existed) stay valid.
//! Verification pins the algorithm to HS256 and requires `exp`.
//!
//! The same keys sign short-lived **publish tokens** (`typ` `publish`,
//! `sub` the stream key `{vehicle_id}-{channel}`): the hub puts one in the
//! RTMP URL of an on-demand `live.start` command, so the device's own token
//! (stored only hashed) never has to be known, and the URL is good for one
//! stream and a few minutes only.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub typ: String,
    /// The login (refresh-token family id) of an access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl AccessClaims {
    pub fn user_id(&self) -> Option<i64> {
        self.sub.parse().ok()
    }
}

/// Signing and verifying keys plus the token lifetime.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
}

impl JwtKeys {
    pub fn new(secret: &[u8], ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_secs,
        }
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// Issue an access token for `user_id` that names no login.
    pub fn issue(&self, user_id: i64) -> Result<String, jsonwebtoken::errors::Error> {
        self.issue_access(user_id, None)
    }

    /// Issue an access token for `user_id` from the login `family_id`
    /// (claim `sid`).
    pub fn issue_for_login(
        &self,
        user_id: i64,
        family_id: &str,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.issue_access(user_id, Some(family_id))
    }

    fn issue_access(
        &self,
        user_id: i64,
        sid: Option<&str>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = crate::util::now_ms() / 1000;
        let claims = AccessClaims {
            sub: user_id.to_string(),
            iat: now,
            exp: now + i64::try_from(self.ttl_secs).unwrap_or(i64::MAX / 2),
            typ: "access".into(),
            sid: sid.map(str::to_owned),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// Issue a publish token for `stream_key`, valid `ttl_secs`.
    pub fn issue_publish(
        &self,
        stream_key: &str,
        ttl_secs: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = crate::util::now_ms() / 1000;
        let claims = AccessClaims {
            sub: stream_key.to_string(),
            iat: now,
            exp: now + i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2),
            typ: "publish".into(),
            sid: None,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// Verify a publish token; returns the stream key it was issued for.
    pub fn verify_publish(&self, token: &str) -> Option<String> {
        let data =
            jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation).ok()?;
        (data.claims.typ == "publish").then_some(data.claims.sub)
    }

    /// Verify a token; returns the user id it was issued to.
    pub fn verify(&self, token: &str) -> Option<i64> {
        self.verify_access(token)?.user_id()
    }

    /// Verify an access token; returns its claims (a valid `sub` checked).
    pub fn verify_access(&self, token: &str) -> Option<AccessClaims> {
        let data =
            jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation).ok()?;
        if data.claims.typ != "access" {
            return None;
        }
        data.claims.user_id()?;
        Some(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_verify_and_reject_tampering() {
        let keys = JwtKeys::new(&[7u8; 32], 600);
        let token = keys.issue(42).unwrap();
        assert_eq!(keys.verify(&token), Some(42));
        let other = JwtKeys::new(&[8u8; 32], 600);
        assert_eq!(other.verify(&token), None, "wrong key");
        let mut tampered = token.clone();
        tampered.push('x');
        assert_eq!(keys.verify(&tampered), None);
        assert_eq!(keys.verify("garbage"), None);
        assert_eq!(keys.verify(""), None);
    }

    #[test]
    fn publish_tokens_are_not_access_tokens() {
        let keys = JwtKeys::new(&[7u8; 32], 600);
        let publish = keys.issue_publish("12-front", 60).unwrap();
        assert_eq!(keys.verify_publish(&publish).as_deref(), Some("12-front"));
        assert_eq!(keys.verify(&publish), None, "a publish token is no login");
        let access = keys.issue(12).unwrap();
        assert_eq!(keys.verify_publish(&access), None);
        let other = JwtKeys::new(&[8u8; 32], 600);
        assert_eq!(other.verify_publish(&publish), None);
    }

    #[test]
    fn login_tokens_name_their_login() {
        let keys = JwtKeys::new(&[7u8; 32], 600);
        let token = keys.issue_for_login(5, "fam1").unwrap();
        let claims = keys.verify_access(&token).unwrap();
        assert_eq!(
            (claims.user_id(), claims.sid.as_deref()),
            (Some(5), Some("fam1"))
        );
        assert_eq!(keys.verify(&token), Some(5));
        let plain = keys.issue(5).unwrap();
        assert_eq!(keys.verify_access(&plain).unwrap().sid, None);
    }

    #[test]
    fn expired_tokens_are_rejected() {
        let keys = JwtKeys::new(&[7u8; 32], 600);
        let claims = AccessClaims {
            sub: "1".into(),
            iat: 0,
            exp: 1000,
            typ: "access".into(),
            sid: None,
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap();
        assert_eq!(keys.verify(&token), None);
    }

    #[test]
    fn alg_none_is_rejected() {
        let keys = JwtKeys::new(&[7u8; 32], 600);
        // {"alg":"none","typ":"JWT"}.{"sub":"1","exp":9999999999,"typ":"access","iat":0}.
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIiwiZXhwIjo5OTk5OTk5OTk5LCJ0eXAiOiJhY2Nlc3MiLCJpYXQiOjB9.";
        assert_eq!(keys.verify(token), None);
    }
}
