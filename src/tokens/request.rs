//! A token request (RFC 6749 §4.4.2) read from its headers and form body: the grant type, the
//! key and how it was sent, and the scope asked for.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::HeaderMap;
use zeroize::Zeroizing;

use super::error::TokenError;
use crate::key::PresentedKey;

/// The largest form body read.
pub const MAX_TOKEN_REQUEST_BODY: usize = 8 * 1024;
/// More form fields than this is not a token request.
const MAX_FIELDS: usize = 16;

/// How the client sent its key (for logs; every way gets the same answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthentication {
    /// HTTP Basic: `client_id` the key id, `client_secret` the key (RFC 6749 §2.3.1).
    Basic,
    /// The `apikey` header, as at the layer.
    ApiKeyHeader,
    /// `client_id` and `client_secret` in the form body.
    FormFields,
}

/// A parsed token request. `Debug` hides the key.
pub struct TokenRequest {
    /// The key presented.
    pub key: PresentedKey,
    /// The client id given with it, if any: must be the key's id.
    pub client_id: Option<String>,
    /// How the key came.
    pub authentication: ClientAuthentication,
    /// The scope asked for, if any.
    pub scope: Option<String>,
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("key", &self.key)
            .field("client_id", &self.client_id)
            .field("authentication", &self.authentication)
            .field("scope", &self.scope)
            .finish()
    }
}

impl TokenRequest {
    /// Reads a `client_credentials` request from its headers and form body.
    ///
    /// # Errors
    /// [`TokenError::InvalidRequest`] for a body that is not a form, a repeated or missing
    /// parameter, or more than one way of authenticating; [`TokenError::UnsupportedGrantType`]
    /// for another grant; [`TokenError::InvalidClient`] when no key came, or one no key can be.
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, TokenError> {
        if body.len() > MAX_TOKEN_REQUEST_BODY {
            return Err(TokenError::InvalidRequest("the request body is over 8 KiB"));
        }
        let is_form = headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|media| {
                media
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(TokenError::InvalidRequest(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let form = Form::parse(body)?;
        match form.grant_type.as_deref() {
            None => return Err(TokenError::InvalidRequest("grant_type is missing")),
            Some("client_credentials") => {}
            Some(_) => return Err(TokenError::UnsupportedGrantType),
        }
        let basic = headers
            .get(AUTHORIZATION)
            .map(|value| basic_credentials(value.as_bytes()));
        let header = headers.get_all("apikey").iter().collect::<Vec<_>>();
        let ways = usize::from(basic.is_some())
            + usize::from(!header.is_empty())
            + usize::from(form.client_secret.is_some());
        if ways > 1 {
            return Err(TokenError::InvalidRequest(
                "the key came more than one way: use one of HTTP Basic, the apikey header, or client_secret",
            ));
        }
        let (key, client_id, authentication) = if let Some(basic) = basic {
            let (id, secret) = basic?;
            if form
                .client_id
                .as_ref()
                .is_some_and(|form_id| *form_id != id)
            {
                return Err(TokenError::InvalidRequest(
                    "client_id in the body differs from the one in Authorization",
                ));
            }
            (secret, Some(id), ClientAuthentication::Basic)
        } else if let [value] = header.as_slice() {
            (
                Zeroizing::new(value.as_bytes().to_vec()),
                form.client_id.clone(),
                ClientAuthentication::ApiKeyHeader,
            )
        } else if !header.is_empty() {
            return Err(TokenError::InvalidRequest("more than one apikey header"));
        } else if let Some(secret) = form.client_secret {
            let secret = Zeroizing::new(secret.as_bytes().to_vec());
            (
                secret,
                form.client_id.clone(),
                ClientAuthentication::FormFields,
            )
        } else {
            return Err(TokenError::InvalidClient);
        };
        let key = PresentedKey::new(&key).map_err(|_| TokenError::InvalidClient)?;
        Ok(Self {
            key,
            client_id,
            authentication,
            scope: form.scope,
        })
    }
}

/// The form fields a token request may carry, each at most once.
#[derive(Default)]
struct Form {
    grant_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<Zeroizing<String>>,
}

impl Form {
    fn parse(body: &[u8]) -> Result<Self, TokenError> {
        let mut form = Form::default();
        for (count, (name, value)) in form_urlencoded::parse(body).enumerate() {
            if count >= MAX_FIELDS {
                return Err(TokenError::InvalidRequest("too many form fields"));
            }
            // RFC 6749 §3.2: "Request and response parameters MUST NOT be included more than once."
            let repeated = match &*name {
                "grant_type" => form.grant_type.replace(value.into_owned()).is_some(),
                "scope" => form.scope.replace(value.into_owned()).is_some(),
                "client_id" => form.client_id.replace(value.into_owned()).is_some(),
                "client_secret" => form
                    .client_secret
                    .replace(Zeroizing::new(value.into_owned()))
                    .is_some(),
                // Parameters a server does not know are ignored (§3.2 allows them).
                _ => false,
            };
            if repeated {
                return Err(TokenError::InvalidRequest(
                    "a parameter appears more than once",
                ));
            }
        }
        Ok(form)
    }
}

/// `Authorization: Basic` credentials: the id and secret, each form-urlencoded first as
/// RFC 6749 §2.3.1 says. Another scheme, or a malformed value, is no client.
fn basic_credentials(value: &[u8]) -> Result<(String, Zeroizing<Vec<u8>>), TokenError> {
    let encoded = value
        .get(..6)
        .filter(|scheme| scheme.eq_ignore_ascii_case(b"basic "))
        .and_then(|_| value.get(6..))
        .ok_or(TokenError::InvalidClient)?;
    let decoded = Zeroizing::new(
        STANDARD
            .decode(encoded.trim_ascii())
            .map_err(|_| TokenError::InvalidClient)?,
    );
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(TokenError::InvalidClient)?;
    let id = url_decode(&decoded[..colon]);
    let secret = url_decode(&decoded[colon + 1..]);
    let id = String::from_utf8(id.to_vec()).map_err(|_| TokenError::InvalidClient)?;
    Ok((id, secret))
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a space, `%XX` a byte.
fn url_decode(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    let plus_as_space: Zeroizing<Vec<u8>> = Zeroizing::new(
        bytes
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect(),
    );
    Zeroizing::new(percent_encoding::percent_decode(&plus_as_space).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn form_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers
    }

    fn error(headers: &HeaderMap, body: &str) -> TokenError {
        TokenRequest::parse(headers, body.as_bytes()).unwrap_err()
    }

    #[test]
    fn the_three_ways_of_sending_a_key() {
        let mut headers = form_headers();
        let basic = STANDARD.encode("tak_id:tak_id_secret%2Bx");
        headers.insert(AUTHORIZATION, format!("Basic {basic}").parse().unwrap());
        let request =
            TokenRequest::parse(&headers, b"grant_type=client_credentials&scope=read").unwrap();
        assert_eq!(request.authentication, ClientAuthentication::Basic);
        assert_eq!(request.key.expose(), b"tak_id_secret+x");
        assert_eq!(request.client_id.as_deref(), Some("tak_id"));
        assert_eq!(request.scope.as_deref(), Some("read"));

        let mut headers = form_headers();
        headers.insert("apikey", HeaderValue::from_static("tak_k"));
        let request = TokenRequest::parse(&headers, b"grant_type=client_credentials").unwrap();
        assert_eq!(request.authentication, ClientAuthentication::ApiKeyHeader);
        assert_eq!(request.key.expose(), b"tak_k");

        let request = TokenRequest::parse(
            &form_headers(),
            b"grant_type=client_credentials&client_id=i&client_secret=tak_s",
        )
        .unwrap();
        assert_eq!(request.authentication, ClientAuthentication::FormFields);
        assert_eq!(request.key.expose(), b"tak_s");
        assert!(!format!("{request:?}").contains("tak_s"));
    }

    #[test]
    fn malformed_requests_get_the_rfc_6749_codes() {
        let headers = form_headers();
        assert!(matches!(error(&headers, ""), TokenError::InvalidRequest(_)));
        assert!(matches!(
            error(&headers, "grant_type=password"),
            TokenError::UnsupportedGrantType
        ));
        assert!(matches!(
            error(&headers, "grant_type=client_credentials"),
            TokenError::InvalidClient
        ));
        assert!(matches!(
            error(
                &headers,
                "grant_type=client_credentials&grant_type=client_credentials"
            ),
            TokenError::InvalidRequest(_)
        ));
        assert!(matches!(
            error(
                &HeaderMap::new(),
                "grant_type=client_credentials&client_secret=x"
            ),
            TokenError::InvalidRequest(_)
        ));
        let mut both = form_headers();
        both.insert("apikey", HeaderValue::from_static("tak_k"));
        assert!(matches!(
            error(&both, "grant_type=client_credentials&client_secret=tak_k"),
            TokenError::InvalidRequest(_)
        ));
        let mut bearer = form_headers();
        bearer.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert!(matches!(
            error(&bearer, "grant_type=client_credentials"),
            TokenError::InvalidClient
        ));
        let long = format!("grant_type=client_credentials&x={}", "a".repeat(9000));
        assert!(matches!(
            error(&headers, &long),
            TokenError::InvalidRequest(_)
        ));
    }
}
