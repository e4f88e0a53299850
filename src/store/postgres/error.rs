//! What a PostgreSQL failure says: the whole cause in one line.
//!
//! tokio-postgres prints only the kind of a failure ("db error", "error performing TLS
//! handshake") and keeps the cause as its source; a log line or a CLI message showing only
//! that cannot be acted on. [`PgError`] prints the chain.

use std::error::Error;
use std::fmt;

use deadpool_postgres::{PoolError, TimeoutType};

/// A PostgreSQL failure, held by [`StoreError::Unavailable`](crate::StoreError::Unavailable).
/// Its text names every cause ("error performing TLS handshake: invalid peer certificate:
/// UnknownIssuer", "db error: FATAL: no pg_hba.conf entry …"), and never a password: the
/// connection string is not part of it.
#[derive(Debug)]
pub struct PgError {
    message: String,
    postgres: Option<tokio_postgres::Error>,
}

impl PgError {
    /// The tokio-postgres error, if the failure came from tokio-postgres (not from waiting
    /// for a pooled connection).
    pub fn postgres(&self) -> Option<&tokio_postgres::Error> {
        self.postgres.as_ref()
    }

    /// The SQLSTATE code, if the server answered with an error.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        self.postgres.as_ref()?.code()
    }
}

impl From<tokio_postgres::Error> for PgError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self {
            message: chain(&error),
            postgres: Some(error),
        }
    }
}

impl From<PoolError> for PgError {
    fn from(error: PoolError) -> Self {
        match error {
            PoolError::Backend(error) => error.into(),
            PoolError::Timeout(TimeoutType::Wait) => Self {
                message: "every pooled connection stayed busy for the connect timeout".into(),
                postgres: None,
            },
            PoolError::Timeout(_) => Self {
                message: "no connection within the connect timeout".into(),
                postgres: None,
            },
            other => Self {
                message: chain(&other),
                postgres: None,
            },
        }
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

// The text holds the causes already: no source, or chain printers would say each twice.
// The tokio-postgres error stays reachable through `postgres()`.
impl Error for PgError {}

/// `error` and its sources as "a: b: c", leaving out a source whose text is already there.
fn chain(error: &dyn Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) =
            tls_error(cause)
        {
            message
                .push_str(" (no root certificate in sslrootcert signed the server's certificate)");
        }
        source = cause.source();
    }
    message
}

/// The rustls error in `cause`: tokio-rustls hands it over inside an `io::Error`, whose
/// `source()` skips it, so it is looked for there too.
fn tls_error<'a>(cause: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    cause.downcast_ref::<rustls::Error>().or_else(|| {
        cause
            .downcast_ref::<std::io::Error>()?
            .get_ref()?
            .downcast_ref::<rustls::Error>()
    })
}
