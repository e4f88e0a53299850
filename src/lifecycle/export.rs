//! The store as JSON ([`Export`]), IBM Maximo's key export ([`MaximoKey`]), and the
//! [`KeyManager`] operations that write and read them.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::input::checked_principal;
use super::{Expiry, InvalidInput, KeyManager, LifecycleError};
use crate::hash::{HashError, Pbkdf2Hash, Prf};
use crate::key::KeyId;
use crate::record::{record_time, KeyRecord};
use crate::store::KeyQuery;

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

impl KeyManager {
    /// Every record, for [`import`](Self::import) elsewhere.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn export(&self) -> Result<Export, LifecycleError> {
        Ok(Export {
            version: EXPORT_VERSION,
            exported_at: record_time(),
            keys: self.store.query(&KeyQuery::new()).await?,
        })
    }

    /// Adds every record of an export, all or none (the per-principal limit is not applied:
    /// this restores what was there). Returns how many were added.
    ///
    /// # Errors
    /// [`LifecycleError::Invalid`] for another export version;
    /// [`AlreadyExists`](LifecycleError::AlreadyExists) if any id is taken (nothing added).
    pub async fn import(&self, export: Export) -> Result<usize, LifecycleError> {
        if export.version != EXPORT_VERSION {
            return Err(InvalidInput::ExportVersion {
                found: export.version,
            }
            .into());
        }
        let n = export.keys.len();
        self.store.insert_many(export.keys).await?;
        Ok(n)
    }

    /// Imports Maximo keys as legacy opaque records (PBKDF2-HMAC-SHA1), all or none; each
    /// gets a new id, and its expiry counts from now. Returns the records added.
    ///
    /// # Errors
    /// [`LifecycleError::Invalid`] naming the first bad row (never echoing its record);
    /// the store's failure.
    pub async fn import_maximo(
        &self,
        rows: Vec<MaximoKey>,
    ) -> Result<Vec<KeyRecord>, LifecycleError> {
        let now = record_time();
        let mut records = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            let bad = |source: Box<dyn std::error::Error + Send + Sync>| InvalidInput::MaximoRow {
                row: i + 1,
                source,
            };
            let principal = checked_principal(&row.userid).map_err(|e| bad(e.into()))?;
            let hash: Pbkdf2Hash = row
                .apikey
                .parse()
                .map_err(|e: HashError| bad(format!("apikey record: {e}").into()))?;
            let expiry = Expiry::from_minutes(row.expiration).map_err(|e| bad(e.into()))?;
            let mut record = KeyRecord::new(KeyId::generate()?, principal, hash, Prf::Sha1);
            record.legacy = true;
            record.expires_at = expiry.resolve(now).map_err(|e| bad(e.into()))?;
            record.created_by.clone_from(&self.actor);
            records.push(record);
        }
        self.store.insert_many(records.clone()).await?;
        Ok(records)
    }
}
