//! The store as JSON ([`Export`]), and IBM Maximo's key export ([`MaximoKey`]).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::record::KeyRecord;

/// The version [`Export`] writes.
pub const EXPORT_VERSION: u32 = 1;

/// The whole store as JSON: records only (PBKDF2 records, never a key), so keys survive a
/// reinstall or a move between backends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Export {
    /// [`EXPORT_VERSION`].
    pub version: u32,
    /// When it was taken.
    pub exported_at: Timestamp,
    /// Every record, ordered by id.
    pub keys: Vec<KeyRecord>,
}

/// One row of a Maximo key export: the user, the PBKDF2 record, and the expiry in minutes.
///
/// `Debug` leaves the record out.
#[derive(Clone, Deserialize)]
pub struct MaximoKey {
    /// Maximo's `userid`: the principal.
    pub userid: String,
    /// The PBKDF2-HMAC-SHA1 record, `iterations:salt_hex:hash_hex`.
    pub apikey: String,
    /// Minutes the key lives from import; `-1` is never.
    pub expiration: i64,
}

impl std::fmt::Debug for MaximoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaximoKey")
            .field("userid", &self.userid)
            .field("apikey", &"<redacted>")
            .field("expiration", &self.expiration)
            .finish()
    }
}

impl MaximoKey {
    /// The rows of a Maximo key export: a JSON array of `{userid, apikey, expiration}`
    /// objects, or CSV (`userid,apikey,expiration`, with or without that header line).
    ///
    /// # Errors
    /// [`MaximoExportError`] for input that is neither; CSV errors name a line, never a
    /// field's contents.
    #[cfg(feature = "cli")]
    pub fn parse_export(input: &[u8]) -> Result<Vec<Self>, MaximoExportError> {
        let text = std::str::from_utf8(input).map_err(|_| MaximoExportError::NotUtf8)?;
        if text.trim_start().starts_with('[') {
            return serde_json::from_str(text).map_err(MaximoExportError::Json);
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let mut rows = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let record = record.map_err(MaximoExportError::Csv)?;
            if i == 0
                && record
                    .get(0)
                    .is_some_and(|f| f.eq_ignore_ascii_case("userid"))
            {
                continue;
            }
            let bad = || MaximoExportError::Row { line: i + 1 };
            if record.len() != 3 {
                return Err(bad());
            }
            rows.push(MaximoKey {
                userid: record[0].to_owned(),
                apikey: record[1].to_owned(),
                expiration: record[2].parse().map_err(|_| bad())?,
            });
        }
        Ok(rows)
    }
}

/// Why a Maximo key export could not be read ([`MaximoKey::parse_export`]).
#[cfg(feature = "cli")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaximoExportError {
    /// The input is not UTF-8 text.
    #[error("input is not UTF-8")]
    NotUtf8,
    /// It starts as a JSON array but is not one of Maximo key rows.
    #[error("not a JSON array of Maximo keys: {0}")]
    Json(#[source] serde_json::Error),
    /// It is not CSV (the csv crate's error names a position, never a field's contents).
    #[error("CSV: {0}")]
    Csv(#[source] csv::Error),
    /// A CSV line without three fields, or with an expiry that is not a whole number.
    #[error("CSV line {line}: want userid,apikey,expiration")]
    Row {
        /// The line, counted from 1.
        line: usize,
    },
}
