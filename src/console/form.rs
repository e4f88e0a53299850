//! Form bodies (`application/x-www-form-urlencoded`), decoded into fields by name, with the
//! bounds a body from anyone on the network needs.

use axum::extract::{FromRequest, Request};
use axum::http::header;

use super::error::ConsoleError;

/// The largest form body read (64 KiB): the largest real form (a new key with 64 permissions
/// of 128 characters and a 2,000-character description) is a tenth of it.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;
/// The most fields a form may carry: "Revoke selected" sends one per key on a page (50),
/// plus a few.
const MAX_FIELDS: usize = 200;

/// A decoded form: every `name=value` pair, in order, with `+` and `%XX` decoded (invalid
/// UTF-8 replaced). What the console's handlers read their input from.
///
/// ```
/// use tower_apikey::console::FormFields;
///
/// let form = FormFields::parse(b"id=k1&id=k2&reason=leaked&note=a+b%21")?;
/// assert_eq!(form.all("id").collect::<Vec<_>>(), ["k1", "k2"]);
/// assert_eq!(form.get("note"), Some("a b!"));
/// assert_eq!(form.get("missing"), None);
/// # Ok::<(), tower_apikey::console::FormError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FormFields {
    fields: Vec<(String, String)>,
}

/// Names only: a value may be a key (the sign-in form's).
impl std::fmt::Debug for FormFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.fields.iter().map(|(name, _)| name))
            .finish()
    }
}

/// Why a form body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormError {
    /// More fields than any console form has.
    #[error("the form has more than {MAX_FIELDS} fields")]
    TooManyFields,
}

impl FormFields {
    /// Decodes `body`.
    ///
    /// # Errors
    /// [`FormError::TooManyFields`] past 200 fields.
    pub fn parse(body: &[u8]) -> Result<Self, FormError> {
        let mut fields = Vec::new();
        for (name, value) in form_urlencoded::parse(body) {
            if fields.len() == MAX_FIELDS {
                return Err(FormError::TooManyFields);
            }
            fields.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self { fields })
    }

    /// Fields holding `pairs`, as if decoded.
    pub(crate) fn of<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            fields: pairs
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, trimmed, or `None` when missing or blank.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// How many fields it holds.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Every value of `name`, in order (a checkbox list).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A query string of the `pairs` that have a value, in order.
pub(crate) fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    query.finish()
}

impl<S: Send + Sync> FromRequest<S> for FormFields {
    type Rejection = ConsoleError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ConsoleError> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(ConsoleError::BadRequest(
                "a form must be sent as application/x-www-form-urlencoded".into(),
            ));
        }
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| {
                ConsoleError::BadRequest(format!("the form is larger than {BODY_LIMIT} bytes"))
            })?;
        FormFields::parse(&body).map_err(|e| ConsoleError::BadRequest(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_pair_and_bounds_the_count() {
        let form = FormFields::parse(b"a=1&b=%ZZ&c&=x&d=%E2%82%AC&d=+").unwrap();
        assert_eq!(form.get("a"), Some("1"));
        assert_eq!(
            form.get("b"),
            Some("%ZZ"),
            "a broken escape is kept as text"
        );
        assert_eq!(form.get("c"), Some(""));
        assert_eq!(form.get(""), Some("x"));
        assert_eq!(form.all("d").collect::<Vec<_>>(), ["€", " "]);
        assert_eq!(form.text("d"), Some("€"));
        assert_eq!(form.text("c"), None);
        let many = "x=1&".repeat(MAX_FIELDS + 1);
        assert_eq!(
            FormFields::parse(many.as_bytes()),
            Err(FormError::TooManyFields)
        );
        assert!(FormFields::parse("x=1&".repeat(MAX_FIELDS).as_bytes()).is_ok());
    }
}
