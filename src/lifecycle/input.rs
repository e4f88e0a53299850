//! What a change to a key carries — [`NewKey`], [`KeyPatch`] — and the limits on it, checked
//! by [`KeyManager`](super::KeyManager) so the CLI and the admin API refuse the same input.

use super::Expiry;
use super::InvalidInput;
use crate::key::KeyId;
use crate::policy::{IpNet, Quota, RateLimit};
use crate::record::{KeyStatus, Revocation};

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Longest principal, in characters.
pub const MAX_PRINCIPAL_CHARS: usize = 256;
/// Longest permission, in characters.
pub const MAX_PERMISSION_CHARS: usize = 128;
/// Most permissions on one key.
pub const MAX_PERMISSIONS: usize = 64;
/// Longest revocation location (an alert's URL, `PATH:LINE`), in characters.
pub const MAX_LOCATION_CHARS: usize = 2048;
/// The most CIDRs an IP allow-list may hold.
pub(crate) const MAX_ALLOWED_IPS: usize = 100;

/// What a new key carries, for [`KeyManager::issue`](super::KeyManager::issue).
#[derive(Debug, Clone)]
pub struct NewKey {
    pub(super) principal: String,
    pub(super) name: Option<String>,
    pub(super) description: Option<String>,
    pub(super) permissions: Vec<String>,
    pub(super) expiry: Expiry,
    pub(super) protected: bool,
    pub(super) rate_limit: Option<RateLimit>,
    pub(super) quota: Option<Quota>,
    pub(super) allowed_ips: Vec<IpNet>,
    /// Set by a rotation: the key the new one replaces.
    pub(super) replaces: Option<KeyId>,
}

impl NewKey {
    /// A key for `principal`: no name, no permissions, never expires, not protected.
    pub fn new(principal: impl Into<String>) -> Self {
        Self {
            principal: principal.into(),
            name: None,
            description: None,
            permissions: Vec::new(),
            expiry: Expiry::Never,
            protected: false,
            rate_limit: None,
            quota: None,
            allowed_ips: Vec::new(),
            replaces: None,
        }
    }

    /// A short label.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A longer note.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The permissions the key carries (replacing any given before).
    pub fn permissions(mut self, permissions: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.permissions = permissions.into_iter().map(Into::into).collect();
        self
    }

    /// When the key expires, from the time it is issued.
    pub fn expires(mut self, expiry: Expiry) -> Self {
        self.expiry = expiry;
        self
    }

    /// Whether the key can be deleted only when forced.
    pub fn protected(mut self, protected: bool) -> Self {
        self.protected = protected;
        self
    }

    /// The key's rate limit (default none).
    pub fn rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.rate_limit = limit;
        self
    }

    /// The key's quota of uses (default none).
    pub fn quota(mut self, quota: Option<Quota>) -> Self {
        self.quota = quota;
        self
    }

    /// The addresses the key may be used from (default: anywhere).
    pub fn allowed_ips(mut self, allowed: impl IntoIterator<Item = IpNet>) -> Self {
        self.allowed_ips = allowed.into_iter().map(|net| net.trunc()).collect();
        self
    }
}

/// Changes to a key's metadata and state, for [`KeyManager::update`](super::KeyManager::update). Fields left `None`
/// stay as they are.
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub(super) name: Option<Option<String>>,
    pub(super) description: Option<Option<String>>,
    pub(super) permissions: Option<Vec<String>>,
    pub(super) expiry: Option<Expiry>,
    pub(super) status: Option<KeyStatus>,
    pub(super) rate_limit: Option<Option<RateLimit>>,
    pub(super) quota: Option<Option<Quota>>,
    pub(super) allowed_ips: Option<Vec<IpNet>>,
}

impl KeyPatch {
    /// No change.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the label, or clears it with `None`.
    pub fn name(mut self, name: Option<String>) -> Self {
        self.name = Some(name);
        self
    }

    /// Sets the note, or clears it with `None`.
    pub fn description(mut self, description: Option<String>) -> Self {
        self.description = Some(description);
        self
    }

    /// Replaces the permissions.
    pub fn permissions(mut self, permissions: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.permissions = Some(permissions.into_iter().map(Into::into).collect());
        self
    }

    /// A new expiry, counted from now ([`Expiry::Never`] clears it).
    pub fn expires(mut self, expiry: Expiry) -> Self {
        self.expiry = Some(expiry);
        self
    }

    /// A new status, under the same rules as [`KeyManager::activate`](super::KeyManager::activate),
    /// [`deactivate`](super::KeyManager::deactivate) and [`revoke`](super::KeyManager::revoke).
    pub fn status(mut self, status: KeyStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets the rate limit, or clears it with `None`.
    pub fn rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// Sets the quota, or clears it with `None`. A quota set starts afresh (all its uses
    /// left), even if it is the one the key had.
    pub fn quota(mut self, quota: Option<Quota>) -> Self {
        self.quota = Some(quota);
        self
    }

    /// Replaces the IP allow-list (empty: anywhere).
    pub fn allowed_ips(mut self, allowed: impl IntoIterator<Item = IpNet>) -> Self {
        self.allowed_ips = Some(allowed.into_iter().map(|net| net.trunc()).collect());
        self
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.description.is_none()
            && self.permissions.is_none()
            && self.expiry.is_none()
            && self.status.is_none()
            && self.rate_limit.is_none()
            && self.quota.is_none()
            && self.allowed_ips.is_none()
    }
}

impl NewKey {
    /// The principal, trimmed, once it passes [`checked_principal`].
    pub(super) fn checked(&self) -> Result<String, InvalidInput> {
        let principal = checked_principal(&self.principal)?;
        check_text("name", self.name.as_deref(), MAX_NAME_CHARS)?;
        check_text(
            "description",
            self.description.as_deref(),
            MAX_DESCRIPTION_CHARS,
        )?;
        check_permissions(&self.permissions)?;
        check_allowed_ips(&self.allowed_ips)?;
        Ok(principal)
    }
}

impl KeyPatch {
    pub(super) fn check(&self) -> Result<(), InvalidInput> {
        if let Some(name) = &self.name {
            check_text("name", name.as_deref(), MAX_NAME_CHARS)?;
        }
        if let Some(description) = &self.description {
            check_text("description", description.as_deref(), MAX_DESCRIPTION_CHARS)?;
        }
        if let Some(permissions) = &self.permissions {
            check_permissions(permissions)?;
        }
        if let Some(allowed) = &self.allowed_ips {
            check_allowed_ips(allowed)?;
        }
        Ok(())
    }
}

/// A principal, trimmed: not empty, at most [`MAX_PRINCIPAL_CHARS`], and free of control
/// characters (it goes into logs and audit fields).
pub(super) fn checked_principal(principal: &str) -> Result<String, InvalidInput> {
    let principal = principal.trim();
    if principal.is_empty() {
        return Err(InvalidInput::EmptyPrincipal);
    }
    check_text("principal", Some(principal), MAX_PRINCIPAL_CHARS)?;
    if principal.chars().any(char::is_control) {
        return Err(InvalidInput::ControlCharacters { field: "principal" });
    }
    Ok(principal.to_owned())
}

fn check_text(field: &'static str, text: Option<&str>, max: usize) -> Result<(), InvalidInput> {
    match text {
        Some(text) if text.chars().count() > max => Err(InvalidInput::TooLong { field, max }),
        _ => Ok(()),
    }
}

/// A revocation's location: at most [`MAX_LOCATION_CHARS`], no control characters (it goes
/// into logs, audit fields and events).
pub(super) fn check_revocation(revocation: &Revocation) -> Result<(), InvalidInput> {
    let location = revocation.location.as_deref();
    check_text("location", location, MAX_LOCATION_CHARS)?;
    if location.is_some_and(|l| l.chars().any(char::is_control)) {
        return Err(InvalidInput::ControlCharacters { field: "location" });
    }
    Ok(())
}

fn check_allowed_ips(allowed: &[IpNet]) -> Result<(), InvalidInput> {
    if allowed.len() > MAX_ALLOWED_IPS {
        return Err(InvalidInput::TooManyAllowedIps {
            max: MAX_ALLOWED_IPS,
        });
    }
    Ok(())
}

fn check_permissions(permissions: &[String]) -> Result<(), InvalidInput> {
    if permissions.len() > MAX_PERMISSIONS {
        return Err(InvalidInput::TooManyPermissions {
            max: MAX_PERMISSIONS,
        });
    }
    for permission in permissions {
        if permission.is_empty() {
            return Err(InvalidInput::EmptyPermission);
        }
        check_text("a permission", Some(permission), MAX_PERMISSION_CHARS)?;
        if permission.chars().any(char::is_control) {
            return Err(InvalidInput::ControlCharacters {
                field: "a permission",
            });
        }
    }
    Ok(())
}
