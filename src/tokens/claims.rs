//! The access token's claims (RFC 9068 §2.2), the key version they carry, and the scope rules.

use serde::{Deserialize, Serialize};

/// `aud`: one audience or several (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The claims of an access token this crate issues, and requires of one it verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccessTokenClaims {
    pub(crate) iss: String,
    /// The principal the key belongs to.
    pub(crate) sub: String,
    pub(crate) aud: Audience,
    pub(crate) exp: i64,
    pub(crate) iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nbf: Option<i64>,
    pub(crate) jti: String,
    /// The key's id.
    pub(crate) client_id: String,
    /// The permissions, joined by single spaces; absent for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key_version: Option<String>,
}

/// Why a scope could not be granted: `invalid_scope`, with this as its description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// A permission of the key cannot be written as a scope token (RFC 6749 §3.3 allows
    /// printable ASCII other than space, `"` and `\`).
    #[error("the key's permission {0:?} cannot be a scope token (it holds whitespace, a quote, a backslash or a character outside printable ASCII); ask for a scope without it")]
    PermissionNotAToken(String),
    /// The request asked for a scope token the key does not grant: its position in the
    /// request (from 1). Not echoed: a client may paste anything there, its key included.
    #[error("the key does not grant scope token {0} of the request")]
    NotGranted(usize),
    /// The request's `scope` is not space-separated scope tokens.
    #[error("a scope is scope tokens separated by single spaces, each printable ASCII other than space, `\"` and `\\`")]
    Syntax,
}

/// Whether `token` is a scope token: `1*( %x21 / %x23-5B / %x5D-7E )` (RFC 6749 §3.3).
pub(crate) fn is_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// The permissions a token gets: the key's (every one must be a scope token), or, when the
/// request names a scope, those of its tokens the key grants (a wildcard `reports:*` grants
/// `reports:read`), never more. Duplicates are dropped.
pub(crate) fn granted_scope(
    identity: &crate::Identity,
    requested: Option<&str>,
) -> Result<Vec<String>, ScopeError> {
    let mut granted: Vec<String> = Vec::new();
    match requested.filter(|scope| !scope.is_empty()) {
        None => {
            for permission in identity.permissions() {
                if !is_scope_token(permission) {
                    return Err(ScopeError::PermissionNotAToken(permission.clone()));
                }
                if !granted.contains(permission) {
                    granted.push(permission.clone());
                }
            }
        }
        Some(scope) => {
            for (at, token) in scope.split(' ').enumerate() {
                if !is_scope_token(token) {
                    return Err(ScopeError::Syntax);
                }
                if !identity.grants(token) {
                    return Err(ScopeError::NotGranted(at + 1));
                }
                if !granted.iter().any(|held| held == token) {
                    granted.push(token.to_owned());
                }
            }
        }
    }
    Ok(granted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashParams;
    use crate::key::KeyFormat;
    use crate::{Identity, KeyRecord};

    fn identity(permissions: &[&str]) -> Identity {
        let params = HashParams::default().with_iterations(1).unwrap();
        let (mut record, _) = KeyRecord::generate("alice", &KeyFormat::default(), &params).unwrap();
        record.permissions = permissions.iter().map(|p| (*p).to_owned()).collect();
        Identity::from_record(&record)
    }

    #[test]
    fn scope_narrows_and_never_widens() {
        let who = identity(&["read", "reports:*", "write"]);
        assert_eq!(
            granted_scope(&who, None).unwrap(),
            ["read", "reports:*", "write"]
        );
        assert_eq!(
            granted_scope(&who, Some("read reports:daily read")).unwrap(),
            ["read", "reports:daily"]
        );
        assert_eq!(
            granted_scope(&who, Some("read admin")),
            Err(ScopeError::NotGranted(2))
        );
        assert_eq!(
            granted_scope(&who, Some("read  write")),
            Err(ScopeError::Syntax)
        );
        assert_eq!(granted_scope(&who, Some("")).unwrap().len(), 3);
    }

    #[test]
    fn a_permission_with_whitespace_is_refused_unless_narrowed_away() {
        let who = identity(&["read", "run reports"]);
        assert!(matches!(
            granted_scope(&who, None),
            Err(ScopeError::PermissionNotAToken(p)) if p == "run reports"
        ));
        assert_eq!(granted_scope(&who, Some("read")).unwrap(), ["read"]);
        for bad in ["a\"b", "a\\b", "é", "tab\there"] {
            assert!(!is_scope_token(bad), "{bad}");
        }
    }
}
