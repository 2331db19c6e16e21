//! Evaluating a checked filter on one record: property access, comparisons
//! with SQL's three-valued logic, `LIKE`, and the temporal relations.

use super::expr::{Cmp, Expr, Interval, Operand, Scalar, TemporalOp, TimeOperand};
use super::spatial::{Geom, intersects, within};
use std::cmp::Ordering;

/// A feature a filter can be evaluated on.
pub trait Record {
    /// The value of a queryable property (`Null` when it has none).
    fn property(&self, name: &str) -> Scalar;
    /// The feature's geometry, if it has a usable one.
    fn geometry(&self) -> Option<Geom<'_>>;
}

impl TemporalOp {
    /// The relation between two closed intervals (an instant is an interval
    /// whose ends are equal).
    fn holds(self, a: &Interval, b: &Interval) -> bool {
        let (s1, e1, s2, e2) = (a.start, a.end, b.start, b.end);
        match self {
            Self::After => s1 > e2,
            Self::Before => e1 < s2,
            Self::Disjoint => e1 < s2 || s1 > e2,
            Self::Intersects => !(e1 < s2 || s1 > e2),
            Self::Equals => s1 == s2 && e1 == e2,
            Self::Contains => s1 < s2 && e1 > e2,
            Self::During => s1 > s2 && e1 < e2,
            Self::FinishedBy => s1 < s2 && e1 == e2,
            Self::Finishes => s1 > s2 && e1 == e2,
            Self::Meets => e1 == s2,
            Self::MetBy => s1 == e2,
            Self::OverlappedBy => s1 > s2 && s1 < e2 && e1 > e2,
            Self::Overlaps => s1 < s2 && e1 > s2 && e1 < e2,
            Self::StartedBy => s1 == s2 && e1 > e2,
            Self::Starts => s1 == s2 && e1 < e2,
        }
    }
}

impl Operand {
    fn value(&self, r: &dyn Record) -> Scalar {
        match self {
            Operand::Property(name, _) => r.property(name),
            Operand::Literal(s) => s.clone(),
            Operand::CaseI(inner) => match inner.value(r) {
                Scalar::Str(s) => Scalar::Str(s.to_lowercase()),
                other => other,
            },
        }
    }
}

/// Compares two values; `None` when either is null or they are of different
/// types (SQL's "unknown").
fn compare(a: &Scalar, b: &Scalar) -> Option<Ordering> {
    match (a, b) {
        (Scalar::Num(x), Scalar::Num(y)) => x.partial_cmp(y),
        (Scalar::Str(x), Scalar::Str(y)) => Some(x.cmp(y)),
        (Scalar::Time(x), Scalar::Time(y)) => Some(x.cmp(y)),
        (Scalar::Bool(x), Scalar::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// `LIKE`: `%` matches any run of characters, `_` one; `\` escapes either.
pub fn like(text: &str, pattern: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Tok {
        Any,
        One,
        Char(char),
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '%' => Tok::Any,
            '_' => Tok::One,
            '\\' => Tok::Char(chars.next().unwrap_or('\\')),
            c => Tok::Char(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // Classic wildcard matching with one backtrack point: linear in practice.
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match toks.get(p) {
            Some(Tok::Any) => {
                star = Some((p, t));
                p += 1;
            }
            Some(Tok::One) => {
                t += 1;
                p += 1;
            }
            Some(Tok::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    toks[p..].iter().all(|t| *t == Tok::Any)
}

/// Three-valued logic: `None` is SQL's unknown, which a filter treats as false.
type Truth = Option<bool>;

impl Expr {
    /// Whether the record passes the filter.
    pub fn matches(&self, r: &dyn Record) -> bool {
        self.eval(r) == Some(true)
    }

    fn eval(&self, r: &dyn Record) -> Truth {
        match self {
            Expr::Bool(b) => Some(*b),
            Expr::And(parts) => {
                let mut out = Some(true);
                for p in parts {
                    match p.eval(r) {
                        Some(false) => return Some(false),
                        None => out = None,
                        Some(true) => {}
                    }
                }
                out
            }
            Expr::Or(parts) => {
                let mut out = Some(false);
                for p in parts {
                    match p.eval(r) {
                        Some(true) => return Some(true),
                        None => out = None,
                        Some(false) => {}
                    }
                }
                out
            }
            Expr::Not(inner) => inner.eval(r).map(|b| !b),
            Expr::Compare(cmp, a, b) => {
                let o = compare(&a.value(r), &b.value(r))?;
                Some(match cmp {
                    Cmp::Eq => o == Ordering::Equal,
                    Cmp::Ne => o != Ordering::Equal,
                    Cmp::Lt => o == Ordering::Less,
                    Cmp::Le => o != Ordering::Greater,
                    Cmp::Gt => o == Ordering::Greater,
                    Cmp::Ge => o != Ordering::Less,
                })
            }
            Expr::Like(a, b) => match (a.value(r), b.value(r)) {
                (Scalar::Str(t), Scalar::Str(p)) => Some(like(&t, &p)),
                _ => None,
            },
            Expr::In(item, list) => {
                let v = item.value(r);
                if v == Scalar::Null {
                    return None;
                }
                let mut out = Some(false);
                for l in list {
                    match compare(&v, &l.value(r)) {
                        Some(Ordering::Equal) => return Some(true),
                        None => out = None,
                        Some(_) => {}
                    }
                }
                out
            }
            Expr::Between(item, lo, hi) => {
                let v = item.value(r);
                let above = compare(&v, &lo.value(r))? != Ordering::Less;
                let below = compare(&v, &hi.value(r))? != Ordering::Greater;
                Some(above && below)
            }
            Expr::IsNull(a) => Some(a.value(r) == Scalar::Null),
            Expr::Intersects(shape) => Some(intersects(r.geometry()?, shape)),
            Expr::DWithin(shape, d) => Some(within(r.geometry()?, shape, *d)),
            Expr::Temporal(op, a, b) => Some(op.holds(&time_of(a, r)?, &time_of(b, r)?)),
        }
    }
}

fn time_of(o: &TimeOperand, r: &dyn Record) -> Option<Interval> {
    match o {
        TimeOperand::Literal(i) => Some(*i),
        TimeOperand::Property(name) => match r.property(name) {
            Scalar::Time(t) => Some(Interval::instant(t)),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Q, thing, yes};
    use super::super::{Lang, parse};
    use super::*;

    #[test]
    fn comparisons_and_boolean_logic_follow_sql_with_null_as_unknown() {
        let t = thing(Some("Yongbyon"), 125.75, 39.8);
        assert!(yes("name = 'Yongbyon' AND count >= 3", &t));
        assert!(!yes("name <> 'Yongbyon' OR count < 3", &t));
        assert!(yes("NOT (count > 3)", &t));
        let nameless = thing(None, 0.0, 0.0);
        // Unknown is neither true nor false: both the test and its negation fail.
        assert!(!yes("name = 'x'", &nameless));
        assert!(!yes("NOT (name = 'x')", &nameless));
        assert!(yes("name IS NULL", &nameless));
        assert!(yes("name = 'x' OR count = 3", &nameless));
    }

    #[test]
    fn like_in_and_between_work_on_strings_and_numbers() {
        let t = thing(Some("Sohae Satellite Launching Station"), 0.0, 0.0);
        assert!(yes("name LIKE 'Sohae%'", &t));
        assert!(yes("name LIKE '%Launching_Station'", &t));
        assert!(!yes("name LIKE 'sohae%'", &t));
        assert!(yes("CASEI(name) LIKE CASEI('SOHAE%')", &t));
        assert!(yes(
            "name IN ('a', 'Sohae Satellite Launching Station')",
            &t
        ));
        assert!(yes("count BETWEEN 2 AND 3", &t));
        assert!(!yes("count NOT BETWEEN 2 AND 3", &t));
    }

    #[test]
    fn like_patterns_escape_wildcards_and_backtrack() {
        assert!(like("50%", "50\\%"));
        assert!(!like("500", "50\\%"));
        assert!(like("abcabd", "%ab_"));
        assert!(like("", "%"));
        assert!(!like("a", ""));
    }

    #[test]
    fn timestamps_compare_with_time_literals_and_intervals() {
        let t = thing(Some("x"), 0.0, 0.0);
        assert!(yes("seen > TIMESTAMP('2018-01-01T00:00:00Z')", &t));
        assert!(yes("seen < '2019-01-01T00:00:00Z'", &t));
        assert!(yes(
            "T_INTERSECTS(seen, INTERVAL('2018-05-24T02:00:00Z', '..'))",
            &t
        ));
        assert!(!yes("T_INTERSECTS(seen, INTERVAL('..', '2018-01-01'))", &t));
        assert!(yes(
            "T_DURING(seen, INTERVAL('2018-01-01', '2018-12-31'))",
            &t
        ));
        assert!(yes("T_INTERSECTS(seen, DATE('2018-05-24'))", &t));
        assert!(yes("T_AFTER(seen, TIMESTAMP('2018-05-24T01:59:59Z'))", &t));
        assert!(!yes(
            "T_BEFORE(seen, TIMESTAMP('2018-05-24T02:00:00Z'))",
            &t
        ));
    }

    #[test]
    fn json_and_text_filters_mean_the_same() {
        let t = thing(Some("Yongbyon"), 125.75, 39.8);
        let json = r#"{"op": "and", "args": [
            {"op": "=", "args": [{"property": "name"}, "Yongbyon"]},
            {"op": "s_dwithin", "args": [{"property": "geometry"}, {"type": "Point", "coordinates": [125.75, 39.8]}, 10]}
        ]}"#;
        assert!(parse(json, Lang::Json, Q).unwrap().matches(&t));
    }
}
