//! The fields of a key's form ("New key", "Edit"): how each is drawn with its label, hint
//! and error, and how each is read, field by field, so a bad one is marked where it is.

use std::collections::BTreeMap;

use maud::{html, Markup};

use super::form::FormFields;
use crate::lifecycle::{Expiry, InvalidInput, LifecycleError};
use crate::policy::{IpNet, Quota, RateLimit};

/// A field: name, label, hint.
pub(crate) type Field = (&'static str, &'static str, &'static str);

pub(crate) const PRINCIPAL: Field = (
    "principal",
    "Principal",
    "Whose key: a user or an integration.",
);
pub(crate) const NAME: Field = ("name", "Name", "A short label.");
pub(crate) const DESCRIPTION: Field = ("description", "Description", "What it is for.");
pub(crate) const PERMISSIONS: Field = (
    "permissions",
    "Permissions",
    "Separated by commas: read, write.",
);
pub(crate) const EXPIRES: Field = (
    "expires",
    "Expires",
    "never, 30d, 90d, P1W, or a time: 2027-01-31T00:00:00Z.",
);
pub(crate) const RATE_LIMIT: Field = (
    "rate_limit",
    "Rate limit",
    "Requests per period: 100/1m. Empty: none.",
);
pub(crate) const QUOTA: Field = (
    "quota",
    "Quota",
    "Uses, refilled each period: 10000/1d. Empty: none.",
);
pub(crate) const ALLOWED_IPS: Field = (
    "allowed_ips",
    "Allowed IPs",
    "Addresses or CIDRs, separated by commas. Empty: anywhere.",
);

/// What is wrong, by field name.
pub(crate) type Errors = BTreeMap<&'static str, String>;

/// `fields` drawn with `value` of each, and its error if any.
pub(crate) fn render(fields: &[Field], value: impl Fn(&str) -> String, errors: &Errors) -> Markup {
    html! {
        @if !errors.is_empty() {
            p.error role="alert" { "Nothing was saved: see the fields marked below." }
        }
        @for (name, label, hint) in fields {
            @let error = errors.get(name);
            @let described = match error {
                Some(_) => format!("{name}-hint {name}-error"),
                None => format!("{name}-hint"),
            };
            div.field.invalid[error.is_some()] {
                label for=(name) { (label) }
                @if *name == "description" {
                    textarea id=(name) name=(name) rows="3" aria-describedby=(described)
                        aria-invalid=[error.map(|_| "true")] { (value(name)) }
                } @else {
                    input type="text" id=(name) name=(name) value=(value(name))
                        aria-describedby=(described) aria-invalid=[error.map(|_| "true")];
                }
                small.hint id={ (name) "-hint" } { (hint) }
                @if let Some(error) = error {
                    p.field-error id={ (name) "-error" } { (error) }
                }
            }
        }
    }
}

/// Items separated by commas (or new lines), trimmed, blanks left out.
pub(crate) fn list(text: &str) -> Vec<&str> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The expiry typed, if any.
pub(crate) fn expiry(form: &FormFields, errors: &mut Errors) -> Option<Expiry> {
    let text = form.text(EXPIRES.0)?;
    text.parse::<Expiry>()
        .map_err(|e| errors.insert(EXPIRES.0, format!("Not an expiry: {e}.")))
        .ok()
}

/// The rate limit typed (`None`: none).
pub(crate) fn rate_limit(form: &FormFields, errors: &mut Errors) -> Option<RateLimit> {
    let text = form.text(RATE_LIMIT.0)?;
    text.parse::<RateLimit>()
        .map_err(|e| errors.insert(RATE_LIMIT.0, format!("Not a rate limit: {e}.")))
        .ok()
}

/// The quota typed (`None`: none).
pub(crate) fn quota(form: &FormFields, errors: &mut Errors) -> Option<Quota> {
    let text = form.text(QUOTA.0)?;
    text.parse::<Quota>()
        .map_err(|e| errors.insert(QUOTA.0, format!("Not a quota: {e}.")))
        .ok()
}

/// The allow-list typed; a single address is a host CIDR.
pub(crate) fn allowed_ips(form: &FormFields, errors: &mut Errors) -> Vec<IpNet> {
    let mut ips = Vec::new();
    for text in list(form.get(ALLOWED_IPS.0).unwrap_or_default()) {
        match text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        {
            Ok(ip) => ips.push(ip),
            Err(_) => {
                errors.insert(
                    ALLOWED_IPS.0,
                    format!("{text:?} is not an IPv4 or IPv6 address or CIDR."),
                );
            }
        }
    }
    ips
}

/// The field a refusal of the key manager is about, if one.
pub(crate) fn field_of(error: &LifecycleError) -> Option<&'static str> {
    match error {
        LifecycleError::LimitReached { .. } => Some(PRINCIPAL.0),
        LifecycleError::Expiry(_) => Some(EXPIRES.0),
        LifecycleError::Invalid(input) => match input {
            InvalidInput::EmptyPrincipal => Some(PRINCIPAL.0),
            InvalidInput::TooLong { field, .. } | InvalidInput::ControlCharacters { field } => {
                [PRINCIPAL, NAME, DESCRIPTION]
                    .iter()
                    .map(|(name, ..)| *name)
                    .find(|name| name == field)
                    .or(Some(PERMISSIONS.0))
            }
            InvalidInput::TooManyAllowedIps { .. } => Some(ALLOWED_IPS.0),
            InvalidInput::TooManyPermissions { .. } | InvalidInput::EmptyPermission => {
                Some(PERMISSIONS.0)
            }
            _ => None,
        },
        _ => None,
    }
}

/// How a form shows the key manager's `error`: beside its field, or above the form when it
/// is about none (a refusal such as a conflict). `Err` for a failure no form can mend (the
/// store).
pub(crate) fn shown(error: LifecycleError) -> Result<(Errors, Option<String>), LifecycleError> {
    let message = format!("{error}.");
    match field_of(&error) {
        Some(field) => Ok((Errors::from([(field, message)]), None)),
        None if error.is_refusal() => Ok((Errors::new(), Some(message))),
        None => Err(error),
    }
}
