//! Site edits through the catalogue: create, replace, retire, and reading the
//! catalogue as it was recorded at an earlier moment.
