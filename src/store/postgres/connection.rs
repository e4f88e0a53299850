//! Connection strings: reads `sslmode` and `sslrootcert` as libpq does, leaves the rest to
//! tokio-postgres, and makes the TLS connector (`tls.rs`) the pool and the change follower
//! connect with.
//!
//! tokio-postgres knows `sslmode=disable|prefer|require` and no root certificates, so the two
//! settings are taken out of the string here.

use std::path::{Path, PathBuf};

use tokio_postgres::config::Host;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls::client_config;

/// A connection string's meaning: where to connect, and how to secure it.
pub(super) struct Connection {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: MakeRustlsConnect,
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it, not verified (libpq's default).
    Prefer,
    /// TLS, not verified (verified as `VerifyCa` when a root certificate is given).
    Require,
    /// TLS, the certificate chain verified, not the host name.
    VerifyCa,
    /// TLS, the chain and the host name verified.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, ConnectionStringError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            // `allow` would mean plain TCP first; it protects nothing, and is refused.
            _ => return Err(ConnectionStringError::UnknownSslMode),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    fn verifies(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

/// Where trusted root certificates come from: libpq's `sslrootcert`.
pub(super) enum RootCert {
    /// A PEM bundle.
    File(PathBuf),
    /// The operating system's roots (`sslrootcert=system`).
    System,
}

/// Why a PostgreSQL connection string cannot be used. Held by
/// [`StoreError::Config`](crate::StoreError::Config); never quotes the string, which may
/// hold a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionStringError {
    /// `sslmode` is not one this crate knows.
    #[error("sslmode must be disable, prefer, require, verify-ca or verify-full")]
    UnknownSslMode,
    /// `verify-ca` or `verify-full` without a root certificate to verify against.
    #[error(
        "sslmode={mode} verifies the server's certificate against a root certificate: give \
         sslrootcert=PATH (a PEM bundle) or sslrootcert=system (the operating system's roots); \
         the default {default} does not exist"
    )]
    NoRootCertificate {
        /// The sslmode asked for.
        mode: &'static str,
        /// Where libpq looks when `sslrootcert` is not given.
        default: String,
    },
    /// `sslrootcert=system` with a mode that does not check the host name (libpq refuses it
    /// too: any public CA can sign a certificate for some other name).
    #[error("sslrootcert=system needs sslmode=verify-full (or no sslmode), not {mode}")]
    SystemRootsNeedVerifyFull {
        /// The sslmode asked for.
        mode: &'static str,
    },
    /// The `sslrootcert` file cannot be read.
    #[error("sslrootcert {path}: {source}")]
    RootCertificateUnreadable {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The `sslrootcert` file holds no usable PEM certificate.
    #[error("sslrootcert {path} holds no usable PEM certificate")]
    RootCertificateInvalid {
        /// The file.
        path: PathBuf,
    },
    /// `sslrootcert=system`, and the operating system gave no root certificate.
    #[error(
        "sslrootcert=system: no root certificate could be loaded from the operating system ({0})"
    )]
    NoSystemRoots(String),
    /// The TLS library refused its settings.
    #[error("TLS settings: {0}")]
    Tls(#[source] rustls::Error),
    /// The rest of the string, as tokio-postgres reads it.
    #[error("connection string: {0}")]
    Syntax(#[source] tokio_postgres::Error),
}

impl Connection {
    /// Reads `url`: `postgresql://…?sslmode=…&sslrootcert=…` or `host=… sslmode=…`.
    pub(super) fn parse(url: &str) -> Result<Self, ConnectionStringError> {
        let (rest, mode, root) = take_tls_settings(url)?;
        let mut config: tokio_postgres::Config =
            rest.parse().map_err(ConnectionStringError::Syntax)?;
        let root = root.map(|r| {
            if r == "system" {
                RootCert::System
            } else {
                RootCert::File(PathBuf::from(r))
            }
        });
        let mode = match (mode, &root) {
            (None, Some(RootCert::System)) => SslMode::VerifyFull,
            (Some(mode), Some(RootCert::System)) if mode != SslMode::VerifyFull => {
                return Err(ConnectionStringError::SystemRootsNeedVerifyFull { mode: mode.name() })
            }
            (mode, _) => mode.unwrap_or(SslMode::Prefer),
        };
        // As libpq: a root certificate given (or in the default place) makes `require`
        // verify the chain.
        let default_root = default_root_file();
        let root = match root {
            Some(root) => Some(root),
            None if mode.verifies() || mode == SslMode::Require => default_root
                .as_deref()
                .filter(|path| path.is_file())
                .map(|path| RootCert::File(path.to_path_buf())),
            None => None,
        };
        let mode = match (mode, &root) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (mode, None) if mode.verifies() => {
                return Err(ConnectionStringError::NoRootCertificate {
                    mode: mode.name(),
                    default: default_root.map_or_else(
                        || "~/.postgresql/root.crt".to_owned(),
                        |p| p.display().to_string(),
                    ),
                })
            }
            (mode, _) => mode,
        };
        // As libpq: TLS is for TCP; over a Unix socket sslmode is ignored.
        let unix_only = config
            .get_hosts()
            .iter()
            .all(|host| matches!(host, Host::Unix(_)))
            && !config.get_hosts().is_empty();
        config.ssl_mode(match mode {
            _ if unix_only => tokio_postgres::config::SslMode::Disable,
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        let tls = MakeRustlsConnect::new(client_config(mode, root)?);
        Ok(Self { config, tls })
    }
}

/// `~/.postgresql/root.crt`, where libpq looks by default.
fn default_root_file() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".postgresql/root.crt"))
}

/// Splits `sslmode` and `sslrootcert` off a connection string; returns the rest for
/// tokio-postgres.
fn take_tls_settings(
    url: &str,
) -> Result<(String, Option<SslMode>, Option<String>), ConnectionStringError> {
    let mut mode = None;
    let mut root = None;
    let mut take = |key: &str, value: String| -> Result<bool, ConnectionStringError> {
        match key {
            "sslmode" => mode = Some(SslMode::parse(&value)?),
            "sslrootcert" => root = Some(value),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), None, None));
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            if !take(&decoded(key), decoded(value))? {
                kept.push(pair);
            }
        }
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        let mut kept = String::new();
        for (key, value) in KeyValues(url.chars().peekable()) {
            let (key, value) = match (key, value) {
                (Some(key), Some(value)) => (key, value),
                // Malformed: tokio-postgres says how.
                _ => return Ok((url.to_owned(), mode, root)),
            };
            if !take(&key, value.clone())? {
                kept.push_str(&key);
                kept.push_str("='");
                for c in value.chars() {
                    if c == '\'' || c == '\\' {
                        kept.push('\\');
                    }
                    kept.push(c);
                }
                kept.push_str("' ");
            }
        }
        kept
    };
    Ok((rest, mode, root))
}

/// The `key = value` pairs of a libpq key/value string: values bare or single-quoted, with
/// backslash escapes. A pair that does not parse comes out as `None`s.
struct KeyValues<I: Iterator<Item = char>>(std::iter::Peekable<I>);

impl<I: Iterator<Item = char>> Iterator for KeyValues<I> {
    type Item = (Option<String>, Option<String>);

    fn next(&mut self) -> Option<Self::Item> {
        let chars = &mut self.0;
        let skip_ws = |chars: &mut std::iter::Peekable<I>| {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
        };
        skip_ws(chars);
        chars.peek()?;
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        skip_ws(chars);
        if key.is_empty() || chars.next_if_eq(&'=').is_none() {
            return Some((None, None));
        }
        skip_ws(chars);
        let quoted = chars.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\'') if quoted => return Some((Some(key), Some(value))),
                Some('\\') => value.extend(chars.next()),
                Some(c) if !quoted && c.is_whitespace() => break,
                Some(c) => value.push(c),
                None if quoted => return Some((Some(key), None)),
                None => break,
            }
        }
        Some((Some(key), (!value.is_empty()).then_some(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, Option<SslMode>, Option<String>) {
        take_tls_settings(url).unwrap()
    }

    #[test]
    fn url_settings_are_taken_and_the_rest_kept() {
        let (rest, mode, root) = split(
            "postgresql://u:p%26w@db:5433/keys?application_name=a&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=5",
        );
        assert_eq!(
            rest,
            "postgresql://u:p%26w@db:5433/keys?application_name=a&connect_timeout=5"
        );
        assert_eq!(mode, Some(SslMode::VerifyFull));
        assert_eq!(root.as_deref(), Some("/etc/ca.pem"));
        let (rest, mode, root) = split("postgres://db/keys?sslmode=require");
        assert_eq!(
            (rest.as_str(), mode, root),
            ("postgres://db/keys", Some(SslMode::Require), None)
        );
        let (rest, mode, _) = split("postgres://db/keys");
        assert_eq!((rest.as_str(), mode), ("postgres://db/keys", None));
    }

    #[test]
    fn key_value_settings_are_taken_and_quoting_survives() {
        let (rest, mode, root) = split(
            r"host=db password='it\'s a \\ b' sslmode = verify-ca sslrootcert='/my certs/ca.pem' dbname=keys",
        );
        assert_eq!(mode, Some(SslMode::VerifyCa));
        assert_eq!(root.as_deref(), Some("/my certs/ca.pem"));
        // What tokio-postgres reads from the rest is what was written.
        let config: tokio_postgres::Config = rest.parse().unwrap_or_else(|_| panic!("parses"));
        assert_eq!(config.get_password(), Some(&br"it's a \ b"[..]));
        assert_eq!(config.get_dbname(), Some("keys"));
        let (rest, _, _) = split(r"host=db password=a\'b\ c dbname=keys");
        let config: tokio_postgres::Config = rest.parse().unwrap_or_else(|_| panic!("parses"));
        assert_eq!(config.get_password(), Some(&b"a'b c"[..]));
        assert_eq!(config.get_dbname(), Some("keys"));
    }

    proptest::proptest! {
        /// Any string: an answer, never a panic, and never the string in the error.
        #[test]
        fn any_string_is_read_or_refused(url in "\\PC{0,80}") {
            if let Err(error) = Connection::parse(&url) {
                let shown = error.to_string();
                proptest::prop_assert!(url.len() < 8 || !shown.contains(url.as_str()));
            }
        }

        /// Values of every shape come through the key/value form unchanged.
        #[test]
        fn key_value_values_survive(password in "[ -~]{1,24}", dbname in "[a-z][a-z0-9_]{0,10}") {
            let escaped: String = password
                .chars()
                .flat_map(|c| (c == '\'' || c == '\\').then_some('\\').into_iter().chain([c]))
                .collect();
            let url = format!("host=db password='{escaped}' sslmode=require dbname={dbname}");
            let (rest, mode, _) = take_tls_settings(&url).unwrap();
            proptest::prop_assert_eq!(mode, Some(SslMode::Require));
            let config: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert_eq!(config.get_password(), Some(password.as_bytes()));
            proptest::prop_assert_eq!(config.get_dbname(), Some(dbname.as_str()));
        }
    }

    #[test]
    fn modes_resolve_as_libpq() {
        let mode = |url: &str| Connection::parse(url).map(|c| c.config.get_ssl_mode());
        use tokio_postgres::config::SslMode as Wire;
        assert!(matches!(mode("host=db"), Ok(Wire::Prefer)));
        assert!(matches!(mode("host=db sslmode=disable"), Ok(Wire::Disable)));
        assert!(matches!(mode("host=db sslmode=require"), Ok(Wire::Require)));
        // Over a Unix socket TLS does not apply.
        assert!(matches!(
            mode("host=/run/postgresql sslmode=require"),
            Ok(Wire::Disable)
        ));
        assert!(matches!(
            mode("host=db sslmode=allow"),
            Err(ConnectionStringError::UnknownSslMode)
        ));
        assert!(matches!(
            mode("host=db sslrootcert=system sslmode=require"),
            Err(ConnectionStringError::SystemRootsNeedVerifyFull { mode: "require" })
        ));
        assert!(matches!(
            mode("host=db sslmode=verify-full sslrootcert=/nonexistent/ca.pem"),
            Err(ConnectionStringError::RootCertificateUnreadable { .. })
        ));
        assert!(
            matches!(mode("host=db sslmode=bogus password=hunter2"), Err(e) if !e.to_string().contains("hunter2"))
        );
    }
}
