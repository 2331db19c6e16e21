//! The query engine, with no web framework and no database in it: CQL2
//! filters, each collection's properties, item selection with sorting and
//! keyset cursors, and CSV. The HTTP layer turns request parameters into the
//! typed values this module takes, and renders what it returns.

pub mod cql;
pub mod csv;
pub mod properties;
pub mod records;
pub mod select;

pub use cql::{CqlError, Lang};
pub use properties::{CollectionId, Kind, Property};
pub use records::{CandidateRecord, ObservationRecord, SiteRecord};
pub use select::{COUNT_CAP, Cursors, Selection, Selector, SortKey};

/// Why a query was refused; each names the request parameter at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Filter(#[from] CqlError),
    #[error("cannot sort by {name:?}; the sortables are {known}")]
    UnknownSortable { name: String, known: String },
    #[error("{name} is named twice")]
    SortedTwice { name: String },
    #[error("{param} is not a cursor this server issued: follow the next and prev links")]
    BadCursor { param: &'static str },
    #[error("give after or before, not both")]
    BothCursors,
}

impl QueryError {
    /// The request parameter the error is about.
    pub fn parameter(&self) -> &'static str {
        match self {
            QueryError::Filter(_) => "filter",
            QueryError::UnknownSortable { .. } | QueryError::SortedTwice { .. } => "sortby",
            QueryError::BadCursor { param } => param,
            QueryError::BothCursors => "before",
        }
    }
}
