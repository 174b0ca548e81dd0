//! Account rules, the same for the REST API and the CLI (`user add`,
//! `device add`): email syntax, password policy, user and vehicle names,
//! serials, and minting device tokens. Each broken rule is an
//! [`AccountError`] with a stable code; `src/http/` picks its status.

use crate::util::{random_token, sha256_hex};

/// Longest password accepted (argon2 takes any length; this bounds work).
pub const MAX_PASSWORD_LEN: usize = 1024;
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest user or vehicle name, in characters.
pub const MAX_NAME_LEN: usize = 100;
pub const MAX_SERIAL_LEN: usize = 64;

/// A broken account rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("the email address is not valid")]
    InvalidEmail,
    #[error("the password must have at least {0} characters")]
    PasswordTooShort(usize),
    #[error("the password must have at most {MAX_PASSWORD_LEN} bytes")]
    PasswordTooLong,
    #[error("the name must be at most {MAX_NAME_LEN} printable characters")]
    InvalidUserName,
    #[error("the name must be 1 to {MAX_NAME_LEN} printable characters")]
    InvalidVehicleName,
    #[error("the serial must be 1 to {MAX_SERIAL_LEN} letters, digits, '.', '_', ':' or '-'")]
    InvalidSerial,
}

impl AccountError {
    /// The error code of the API's JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            AccountError::InvalidEmail => "invalid_email",
            AccountError::PasswordTooShort(_) => "password_too_short",
            AccountError::PasswordTooLong => "password_too_long",
            AccountError::InvalidUserName | AccountError::InvalidVehicleName => "invalid_name",
            AccountError::InvalidSerial => "invalid_serial",
        }
    }
}

/// Trim and lowercase an email and check its syntax.
pub fn normalize_email(raw: &str) -> Result<String, AccountError> {
    let email = raw.trim().to_lowercase();
    if email.len() > MAX_EMAIL_LEN
        || !email_address::EmailAddress::is_valid(&email)
        || !email.contains('.')
    {
        return Err(AccountError::InvalidEmail);
    }
    Ok(email)
}

/// Check a new password's length (in characters).
pub fn check_password(password: &str, min_len: usize) -> Result<(), AccountError> {
    if password.chars().count() < min_len {
        return Err(AccountError::PasswordTooShort(min_len));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AccountError::PasswordTooLong);
    }
    Ok(())
}

/// A user's display name: optional, trimmed, at most 100 printable
/// characters (blank is none).
pub fn check_user_name(name: Option<String>) -> Result<Option<String>, AccountError> {
    let Some(name) = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(AccountError::InvalidUserName);
    }
    Ok(Some(name))
}

/// A serial: 1..=64 of `A-Z a-z 0-9 . _ : -`.
pub fn check_serial(raw: &str) -> Result<String, AccountError> {
    let serial = raw.trim();
    if serial.is_empty()
        || serial.len() > MAX_SERIAL_LEN
        || !serial
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err(AccountError::InvalidSerial);
    }
    Ok(serial.to_string())
}

/// A vehicle name: 1..=100 printable characters.
pub fn check_vehicle_name(raw: &str) -> Result<String, AccountError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control)
    {
        return Err(AccountError::InvalidVehicleName);
    }
    Ok(name.to_string())
}

/// A new device token: shown once to its owner, only its hash stored.
pub struct DeviceToken {
    /// `dt_` and 32 random bytes, base64url.
    pub token: String,
    /// Its SHA-256, hex: what the database keeps.
    pub hash: String,
}

impl DeviceToken {
    pub fn mint() -> Self {
        let token = random_token("dt_", 32);
        let hash = sha256_hex(&token);
        Self { token, hash }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalize_email("  Ann@Example.COM ").unwrap(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@@example.com",
            "a b@example.com",
            "ann@localhost",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn passwords_are_length_checked() {
        assert!(check_password("1234567", 8).is_err());
        assert!(check_password("12345678", 8).is_ok());
        assert!(check_password("éééééééé", 8).is_ok());
        assert!(check_password(&"x".repeat(2000), 8).is_err());
    }

    #[test]
    fn serials_and_names_are_checked() {
        assert_eq!(check_serial(" BB-0001 ").unwrap(), "BB-0001");
        for bad in ["", " ", "a b", "x/y", "ü", &"s".repeat(65)] {
            assert!(check_serial(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_vehicle_name(" Family car ").unwrap(), "Family car");
        assert!(check_vehicle_name("").is_err());
        assert!(check_vehicle_name("a\u{0}b").is_err());
        assert!(check_vehicle_name(&"n".repeat(101)).is_err());
    }

    #[test]
    fn device_tokens_are_stored_hashed() {
        let t = DeviceToken::mint();
        assert!(t.token.starts_with("dt_"));
        assert_eq!(t.hash, sha256_hex(&t.token));
    }
}
