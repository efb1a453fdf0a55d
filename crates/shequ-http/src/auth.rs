//! Bearer tokens: signed JWTs (HS256) carrying a role and an organisation.
//!
//! The signing key is 32 random bytes, kept hex-encoded in a key file that is created on first
//! start (mode 0600 on Unix). The key is never logged.

use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use shequ_service::{Actor, Role};
use uuid::Uuid;

/// How long an issued token is valid, in seconds: 30 days.
pub const TOKEN_LIFETIME_SECONDS_DEFAULT: u64 = 30 * 24 * 3600;
const KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
}

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who: a person's or system's name, for the audit trail.
    pub sub: String,
    pub role: Role,
    pub org: Uuid,
    pub iat: u64,
    pub exp: u64,
}

impl Claims {
    pub fn actor(&self) -> Actor {
        Actor { role: self.role, organisation: self.org }
    }
}

/// The keys that sign and check tokens. Cheap to clone: one shared allocation.
#[derive(Clone)]
pub struct TokenKeys(Arc<Keys>);

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// HS256 only, expiry checked; built once rather than on every request.
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("TokenKeys(…)")
    }
}

impl TokenKeys {
    pub fn from_secret(secret: &[u8]) -> Result<Self, AuthError> {
        let invalid =
            |error: jsonwebtoken::errors::Error| AuthError::Invalid(format!("signing key: {error}"));
        Ok(Self(Arc::new(Keys {
            encoding: EncodingKey::from_secret(secret).map_err(invalid)?,
            decoding: DecodingKey::from_secret(secret).map_err(invalid)?,
            validation: Validation::new(Algorithm::HS256),
        })))
    }

    /// Reads the key file, or creates it with a fresh random key if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, AuthError> {
        let secret = shequ_service::key_file::load_or_create(path, KEY_BYTES)
            .map_err(|reason| AuthError::KeyFile { path: path.display().to_string(), reason })?;
        Self::from_secret(&secret)
    }

    pub fn issue(
        &self,
        role: Role,
        organisation: Uuid,
        subject: &str,
        now_seconds: u64,
        lifetime_seconds: u64,
    ) -> String {
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            org: organisation,
            iat: now_seconds,
            exp: now_seconds + lifetime_seconds,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.0.encoding)
            .expect("HS256 signing cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.0.decoding, &self.0.validation)
            .map(|data| data.claims)
            .map_err(|error| AuthError::Invalid(error.to_string()))
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme's name is
/// case-insensitive (RFC 9110, section 11.1).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_forged_ones_do_not() {
        let keys = TokenKeys::from_secret(&[7; 32]).unwrap();
        let organisation = Uuid::from_u128(9);
        let now = 1_800_000_000;
        let token = keys.issue(Role::StreetOffice, organisation, "clerk wang", now, 3600);
        let claims = keys.verify(&token).unwrap();
        assert_eq!(claims.actor(), Actor { role: Role::StreetOffice, organisation });
        assert_eq!(claims.sub, "clerk wang");
        let other = TokenKeys::from_secret(&[8; 32]).unwrap();
        assert!(matches!(other.verify(&token), Err(AuthError::Invalid(_))));
        let expired = keys.issue(Role::Community, organisation, "x", 1_000_000, 60);
        assert!(
            matches!(keys.verify(&expired), Err(AuthError::Invalid(message)) if message.contains("xpired"))
        );
    }

    #[test]
    fn the_key_file_is_created_once_and_reused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("shequ.key");
        let first = TokenKeys::load_or_create(&path).unwrap();
        let token = first.issue(Role::Inspector, Uuid::from_u128(1), "inspector", 1_800_000_000, 3600);
        let second = TokenKeys::load_or_create(&path).unwrap();
        assert!(second.verify(&token).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(TokenKeys::load_or_create(&path), Err(AuthError::KeyFile { .. })));
    }
}
