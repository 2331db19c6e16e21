//! The typed form of a checked filter, and the values and time intervals it
//! compares.

use crate::model::{BBox, Place, Timestamp};
use crate::query::properties::Kind;
use serde_json::Value;
use std::cmp::Ordering;

/// A property or literal value as the evaluator sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Time(Timestamp),
}

impl Scalar {
    /// A total order for sorting one property's values: nulls sort after every
    /// value, so they come last in ascending order (as in PostgreSQL).
    pub fn sort_cmp(&self, other: &Scalar) -> Ordering {
        fn rank(s: &Scalar) -> u8 {
            match s {
                Scalar::Bool(_) => 0,
                Scalar::Num(_) => 1,
                Scalar::Str(_) => 2,
                Scalar::Time(_) => 3,
                Scalar::Null => 4,
            }
        }
        match (self, other) {
            (Scalar::Bool(a), Scalar::Bool(b)) => a.cmp(b),
            (Scalar::Num(a), Scalar::Num(b)) => a.total_cmp(b),
            (Scalar::Str(a), Scalar::Str(b)) => a.cmp(b),
            (Scalar::Time(a), Scalar::Time(b)) => a.cmp(b),
            _ => rank(self).cmp(&rank(other)),
        }
    }

    /// The value in JSON, for cursors.
    pub fn to_json(&self) -> Value {
        match self {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Num(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
            Scalar::Str(s) => Value::String(s.clone()),
            Scalar::Time(t) => Value::String(t.to_rfc3339()),
        }
    }

    /// Reads a cursor value written by [`Scalar::to_json`] for a property of `kind`.
    pub fn from_json(kind: Kind, v: &Value) -> Option<Scalar> {
        Some(match (kind, v) {
            (_, Value::Null) => Scalar::Null,
            (Kind::Boolean, Value::Bool(b)) => Scalar::Bool(*b),
            (Kind::Integer, Value::Number(n)) => Scalar::Num(n.as_f64()?),
            (Kind::String, Value::String(s)) => Scalar::Str(s.clone()),
            (Kind::Timestamp, Value::String(s)) => {
                Scalar::Time(Timestamp::parse("cursor", s).ok()?)
            }
            _ => return None,
        })
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The temporal relations of CQL2 (Allen's interval algebra).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemporalOp {
    After,
    Before,
    Contains,
    Disjoint,
    During,
    Equals,
    FinishedBy,
    Finishes,
    Intersects,
    Meets,
    MetBy,
    OverlappedBy,
    Overlaps,
    StartedBy,
    Starts,
}

impl TemporalOp {
    pub(super) fn parse(op: &str) -> Option<Self> {
        Some(match op {
            "t_after" => Self::After,
            "t_before" => Self::Before,
            "t_contains" => Self::Contains,
            "t_disjoint" => Self::Disjoint,
            "t_during" => Self::During,
            "t_equals" => Self::Equals,
            "t_finishedby" => Self::FinishedBy,
            "t_finishes" => Self::Finishes,
            "t_intersects" => Self::Intersects,
            "t_meets" => Self::Meets,
            "t_metby" => Self::MetBy,
            "t_overlappedby" => Self::OverlappedBy,
            "t_overlaps" => Self::Overlaps,
            "t_startedby" => Self::StartedBy,
            "t_starts" => Self::Starts,
            _ => return None,
        })
    }
}

/// One end of a time interval; open ends are infinitely far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bound {
    Earliest,
    At(Timestamp),
    Latest,
}

/// A closed time interval, possibly open-ended; an instant has equal ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: Bound,
    pub end: Bound,
}

impl Interval {
    pub fn instant(t: Timestamp) -> Self {
        Self {
            start: Bound::At(t),
            end: Bound::At(t),
        }
    }

    /// Whether the instant `t` lies inside (ends included).
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= Bound::At(t) && Bound::At(t) <= self.end
    }

    /// Reads one end: an RFC 3339 time, a date (its first or last microsecond,
    /// as `end` says), or `..` / empty for an open end.
    pub fn parse_end(raw: &str, end: bool) -> Result<Bound, String> {
        let raw = raw.trim();
        if raw.is_empty() || raw == ".." {
            return Ok(if end { Bound::Latest } else { Bound::Earliest });
        }
        if let Ok(t) = Timestamp::parse("datetime", raw) {
            return Ok(Bound::At(t));
        }
        let day = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .map_err(|_| format!("{raw:?} is neither an RFC 3339 time nor a date"))?;
        let time = if end { "23:59:59.999999Z" } else { "00:00:00Z" };
        Timestamp::parse("datetime", &format!("{day}T{time}"))
            .map(Bound::At)
            .map_err(|e| e.to_string())
    }

    /// Reads an OGC API `datetime` value: an instant, a date, or `start/end`
    /// with `..` (or nothing) for an open end.
    pub fn parse_datetime(raw: &str) -> Result<Self, String> {
        let interval = match raw.split_once('/') {
            None => {
                if raw.trim() == ".." {
                    return Err("an instant cannot be \"..\"; write an interval like ../2020-01-01T00:00:00Z".into());
                }
                Self {
                    start: Self::parse_end(raw, false)?,
                    end: Self::parse_end(raw, true)?,
                }
            }
            Some((a, b)) => Self {
                start: Self::parse_end(a, false)?,
                end: Self::parse_end(b, true)?,
            },
        };
        if interval.start > interval.end {
            return Err("the interval starts after it ends".into());
        }
        Ok(interval)
    }
}

/// A query geometry given in a filter.
#[derive(Debug, Clone)]
pub enum Shape {
    Places(Vec<Place>),
    BBox(BBox),
}

/// What an operand of a comparison is.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Property(String, Kind),
    Literal(Scalar),
    /// `CASEI(x)`: compared case-insensitively.
    CaseI(Box<Operand>),
}

/// A temporal operand: a property holding an instant, or a literal.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeOperand {
    Property(String),
    Literal(Interval),
}

/// A checked filter.
#[derive(Debug, Clone)]
pub enum Expr {
    Bool(bool),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Compare(Cmp, Operand, Operand),
    Like(Operand, Operand),
    In(Operand, Vec<Operand>),
    Between(Operand, Operand, Operand),
    IsNull(Operand),
    Intersects(Shape),
    DWithin(Shape, f64),
    Temporal(TemporalOp, TimeOperand, TimeOperand),
}

impl Expr {
    /// Its terms: properties, values and geometry literals, each one. Evaluating
    /// it on a record visits each at most once.
    pub fn terms(&self) -> usize {
        match self {
            Expr::Bool(_) => 1,
            Expr::And(parts) | Expr::Or(parts) => parts.iter().map(Expr::terms).sum(),
            Expr::Not(inner) => inner.terms(),
            Expr::Compare(_, _, _) | Expr::Like(_, _) => 2,
            Expr::In(_, list) => 1 + list.len(),
            Expr::Between(_, _, _) => 3,
            Expr::IsNull(_) | Expr::Intersects(_) => 1,
            Expr::DWithin(_, _) | Expr::Temporal(_, _, _) => 2,
        }
    }
}

impl Operand {
    pub(super) fn unwrapped(&self) -> &Operand {
        match self {
            Operand::CaseI(inner) => inner.unwrapped(),
            other => other,
        }
    }

    pub(super) fn kind(&self) -> Option<Kind> {
        match self {
            Operand::Property(_, k) => Some(*k),
            Operand::Literal(_) => None,
            Operand::CaseI(inner) => inner.kind(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_values_are_instants_dates_or_intervals_open_at_either_end() {
        let t = |s: &str| Timestamp::parse("t", s).unwrap();
        let i = Interval::parse_datetime("2018-01-01T00:00:00Z/..").unwrap();
        assert!(i.contains(t("2030-01-01T00:00:00Z")));
        assert!(!i.contains(t("2017-12-31T23:59:59Z")));
        let day = Interval::parse_datetime("2018-05-24").unwrap();
        assert!(day.contains(t("2018-05-24T23:59:59Z")));
        assert!(!day.contains(t("2018-05-25T00:00:00Z")));
        let open = Interval::parse_datetime("/2018-05-24T00:00:00Z").unwrap();
        assert!(open.contains(t("1900-01-01T00:00:00Z")));
        assert!(Interval::parse_datetime("2019-01-01/2018-01-01").is_err());
        assert!(Interval::parse_datetime("yesterday").is_err());
        assert!(Interval::parse_datetime("..").is_err());
    }
}
