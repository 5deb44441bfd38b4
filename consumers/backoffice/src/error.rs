//! The back office's error: each variant names the resource or field at fault, so an agent (or
//! an operator) can tell "not yours" from "not possible" from "the disk is broken".

use std::path::PathBuf;

/// Why a back office call was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackOfficeError {
    /// The resource does not exist.
    #[error("{kind} `{id}` does not exist")]
    NotFound { kind: &'static str, id: String },
    /// The resource exists but belongs to another customer; nothing was read or changed.
    #[error("{kind} `{id}` does not belong to customer `{customer}`")]
    NotOwned { kind: &'static str, id: String, customer: String },
    /// The request is well formed but the resource's state forbids it (fully refunded, out of stock).
    #[error("{kind} `{id}` {reason}")]
    Conflict { kind: &'static str, id: String, reason: String },
    /// An argument is malformed (empty key, zero quantity, a sku that is not in the order).
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The database file cannot be opened, is not ours, or SQLite failed.
    #[error("back office database {}: {detail}", path.display())]
    Storage { path: PathBuf, detail: String },
    /// The database refused the change for a reason no retry can fix: a constraint or trigger
    /// the back office does not know, a table or column missing (a bad migration or deployment).
    #[error("back office database {} refused the change: {detail}", path.display())]
    Rejected { path: PathBuf, detail: String },
}

impl BackOfficeError {
    /// A failure of SQLite itself, classified: refusals no retry can fix, or a storage fault
    /// (busy, locked, full, I/O) that may pass.
    pub(crate) fn from_sqlite(path: &std::path::Path, e: &rusqlite::Error, detail: String) -> Self {
        let permanent = match e {
            rusqlite::Error::SqliteFailure(f, _) => {
                matches!(f.code, rusqlite::ErrorCode::ConstraintViolation | rusqlite::ErrorCode::Unknown)
            }
            rusqlite::Error::SqlInputError { .. } => true,
            _ => false,
        };
        let path = path.to_path_buf();
        if permanent { BackOfficeError::Rejected { path, detail } } else { BackOfficeError::Storage { path, detail } }
    }
}

/// What a step inside a transaction can fail with; the path is added at the API boundary.
#[derive(Debug)]
pub(crate) enum Fail {
    Sql(rusqlite::Error),
    Api(BackOfficeError),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<BackOfficeError> for Fail {
    fn from(e: BackOfficeError) -> Self {
        Fail::Api(e)
    }
}

/// SQLite's error in words an operator can act on.
pub(crate) fn describe(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => "the file is not a SQLite database".to_owned(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            format!("the database stayed locked by another connection for 5 s ({e})")
        }
        Some(rusqlite::ErrorCode::ReadOnly) => format!("the file is read-only ({e})"),
        Some(rusqlite::ErrorCode::DiskFull) => format!("the disk is full ({e})"),
        _ => e.to_string(),
    }
}
