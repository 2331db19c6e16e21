//! What of a filter an index can answer: text that a property must contain
//! for the filter to hold, so that a name index can narrow the records before
//! the whole filter is evaluated on each. Every answer here is necessary, never
//! sufficient: the caller still evaluates the filter on what is left.

use super::{Expr, Operand, Scalar};

/// Lowercase text that `property` must contain, in any case, for `expr` to
/// hold: the longest literal run of a `LIKE` pattern on it, taken from a
/// conjunct. `None` when the filter needs no such text.
pub fn required_text(expr: &Expr, property: &str) -> Option<String> {
    match expr {
        Expr::Like(a, b) => match (a.unwrapped(), b.unwrapped()) {
            (Operand::Property(name, _), Operand::Literal(Scalar::Str(pattern)))
                if name == property =>
            {
                longest_literal(pattern)
            }
            _ => None,
        },
        Expr::Compare(super::Cmp::Eq, a, b) => match (a.unwrapped(), b.unwrapped()) {
            (Operand::Property(name, _), Operand::Literal(Scalar::Str(text)))
            | (Operand::Literal(Scalar::Str(text)), Operand::Property(name, _))
                if name == property =>
            {
                folded_ascii(text)
            }
            _ => None,
        },
        // Any conjunct's text will do; the longest narrows most.
        Expr::And(parts) => parts
            .iter()
            .filter_map(|p| required_text(p, property))
            .max_by_key(String::len),
        _ => None,
    }
}

/// The longest run of a LIKE pattern with no wildcard in it, lowercased.
fn longest_literal(pattern: &str) -> Option<String> {
    let mut runs = vec![String::new()];
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' | '_' => runs.push(String::new()),
            '\\' => runs
                .last_mut()
                .unwrap_or_else(|| unreachable!())
                .push(chars.next().unwrap_or('\\')),
            c => runs.last_mut().unwrap_or_else(|| unreachable!()).push(c),
        }
    }
    runs.into_iter()
        .filter_map(|r| folded_ascii(&r))
        .max_by_key(String::len)
}

/// The text lowercased, if it is ASCII and not empty. Lowercasing other
/// scripts can depend on the letters around (a final sigma), so a substring
/// lowercased alone may not be a substring of the name lowercased whole.
fn folded_ascii(text: &str) -> Option<String> {
    (!text.is_empty() && text.is_ascii()).then(|| text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::cql::{Lang, parse};
    use crate::query::properties::CollectionId;

    fn needed(filter: &str) -> Option<String> {
        let expr = parse(filter, Lang::Text, CollectionId::Sites.properties()).unwrap();
        required_text(&expr, "name")
    }

    #[test]
    fn a_like_on_the_name_needs_its_longest_literal_run() {
        assert_eq!(needed("name LIKE '%Yongb%yon%'"), Some("yongb".into()));
        assert_eq!(needed("name LIKE 'Pung_ye-ri'"), Some("ye-ri".into()));
        assert_eq!(needed("name LIKE '50\\%%'"), Some("50%".into()));
        assert_eq!(
            needed("CASEI(name) LIKE CASEI('%SOHAE%')"),
            Some("sohae".into())
        );
        assert_eq!(needed("name = 'Sohae'"), Some("sohae".into()));
    }

    #[test]
    fn only_a_conjunct_needs_text() {
        assert_eq!(
            needed("kind = 'reactor' AND name LIKE '%yong%'"),
            Some("yong".into())
        );
        assert_eq!(needed("kind = 'reactor' OR name LIKE '%yong%'"), None);
        assert_eq!(needed("NOT name LIKE '%yong%'"), None);
        assert_eq!(needed("name LIKE '%'"), None);
        assert_eq!(needed("country LIKE '%PRK%'"), None);
    }

    #[test]
    fn text_beyond_ascii_is_left_to_the_filter() {
        assert_eq!(needed("name LIKE '%ΟΣ%'"), None);
    }
}
