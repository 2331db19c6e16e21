//! Site edits over HTTP: create, replace, retire, with write authority.
