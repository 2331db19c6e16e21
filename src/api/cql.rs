//! CQL2 filters (OGC API - Features Part 3). The `cql2` crate reads CQL2 text or
//! JSON; its CQL2-JSON form is checked here, once per request, into a typed
//! expression against a collection's queryables, and evaluated per feature with
//! the project's own geodesy (so `S_DWITHIN` is in metres on the WGS84 ellipsoid).

use crate::geodesy::{self, geodesic_distance, min_distance_for_angle};
use crate::model::{BBox, Footprint, LonLat, Place, Timestamp};
use serde_json::Value;
use std::cmp::Ordering;

/// Why a filter was refused; rendered as a 400 naming the `filter` parameter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CqlError {
    #[error("the filter is not valid {lang}: {reason}")]
    Syntax { lang: &'static str, reason: String },
    #[error("unknown property {name:?}; the queryables are {known}")]
    UnknownProperty { name: String, known: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0} is not supported")]
    Unsupported(String),
}

fn invalid(msg: impl Into<String>) -> CqlError {
    CqlError::Invalid(msg.into())
}

/// The language of a `filter` parameter (`filter-lang`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Text,
    Json,
}

impl Lang {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "cql2-text" => Some(Lang::Text),
            "cql2-json" => Some(Lang::Json),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Lang::Text => "CQL2 text",
            Lang::Json => "CQL2 JSON",
        }
    }
}

/// The type of a queryable property, which decides how literals compared with
/// it are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Integer,
    Boolean,
    Timestamp,
    Geometry,
}

/// A property a filter may name.
#[derive(Debug, Clone, Copy)]
pub struct Queryable {
    pub name: &'static str,
    pub kind: Kind,
    pub description: &'static str,
    /// The closed set of values, for enumerated strings.
    pub values: &'static [&'static str],
}

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

/// Where a feature is, as the spatial predicates need it.
#[derive(Debug, Clone, Copy)]
pub enum Geom<'a> {
    Point(LonLat),
    Area(&'a Footprint),
}

impl<'a> From<&'a Place> for Geom<'a> {
    fn from(p: &'a Place) -> Self {
        match p {
            Place::Point(p) => Geom::Point(*p),
            Place::Area(f) => Geom::Area(f),
        }
    }
}

/// A feature a filter can be evaluated on.
pub trait Record {
    /// The value of a queryable property (`Null` when it has none).
    fn property(&self, name: &str) -> Scalar;
    /// The feature's geometry, if it has a usable one.
    fn geometry(&self) -> Option<Geom<'_>>;
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
    fn parse(op: &str) -> Option<Self> {
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

/// How deep parentheses may nest in CQL2 text. The `cql2` parser backtracks
/// through every way of reading an unclosed group, so its time grows about
/// threefold with each level (in a debug build 16 levels took seconds and 20
/// did not finish in a minute). A MULTIPOLYGON inside a function inside a few
/// groups stays well below this.
pub const MAX_TEXT_NESTING: usize = 10;

/// The deepest nesting of parentheses outside string literals.
fn nesting(raw: &str) -> usize {
    let (mut depth, mut deepest, mut quoted) = (0usize, 0usize, false);
    for c in raw.chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Reads a filter in `lang` and checks it against `queryables`.
pub fn parse(raw: &str, lang: Lang, queryables: &[Queryable]) -> Result<Expr, CqlError> {
    let syntax = |reason: String| CqlError::Syntax {
        lang: lang.name(),
        reason,
    };
    let expr = match lang {
        Lang::Text if nesting(raw) > MAX_TEXT_NESTING => {
            return Err(syntax(format!(
                "parentheses nest more than {MAX_TEXT_NESTING} deep"
            )));
        }
        Lang::Text => cql2::parse_text(raw).map_err(|e| syntax(e.to_string()))?,
        Lang::Json => cql2::parse_json(raw).map_err(|e| syntax(e.to_string()))?,
    };
    // The crate's serialised form is CQL2 JSON, whichever language came in.
    let json = serde_json::to_value(&expr).map_err(|e| syntax(e.to_string()))?;
    Checker { queryables }.expr(&json)
}

struct Checker<'q> {
    queryables: &'q [Queryable],
}

fn op_and_args(v: &Value) -> Option<(String, &Vec<Value>)> {
    let obj = v.as_object()?;
    let op = obj.get("op")?.as_str()?.to_ascii_lowercase();
    let args = obj.get("args")?.as_array()?;
    Some((op, args))
}

fn arity(op: &str, args: &[Value], n: usize) -> Result<(), CqlError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(invalid(format!(
            "{op} takes {n} arguments, got {}",
            args.len()
        )))
    }
}

impl Checker<'_> {
    fn queryable(&self, name: &str) -> Result<&Queryable, CqlError> {
        self.queryables
            .iter()
            .find(|q| q.name == name)
            .ok_or_else(|| CqlError::UnknownProperty {
                name: name.to_owned(),
                known: self
                    .queryables
                    .iter()
                    .map(|q| q.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    fn expr(&self, v: &Value) -> Result<Expr, CqlError> {
        if let Value::Bool(b) = v {
            return Ok(Expr::Bool(*b));
        }
        let (op, args) =
            op_and_args(v).ok_or_else(|| invalid(format!("expected a predicate, found {v}")))?;
        Ok(match op.as_str() {
            "and" | "or" => {
                if args.len() < 2 {
                    return Err(invalid(format!("{op} needs at least two arguments")));
                }
                let parts = args
                    .iter()
                    .map(|a| self.expr(a))
                    .collect::<Result<_, _>>()?;
                if op == "and" {
                    Expr::And(parts)
                } else {
                    Expr::Or(parts)
                }
            }
            "not" => {
                arity(&op, args, 1)?;
                Expr::Not(Box::new(self.expr(&args[0])?))
            }
            "=" | "<>" | "<" | "<=" | ">" | ">=" => {
                arity(&op, args, 2)?;
                let cmp = match op.as_str() {
                    "=" => Cmp::Eq,
                    "<>" => Cmp::Ne,
                    "<" => Cmp::Lt,
                    "<=" => Cmp::Le,
                    ">" => Cmp::Gt,
                    _ => Cmp::Ge,
                };
                let (a, b) = self.pair(&args[0], &args[1])?;
                Expr::Compare(cmp, a, b)
            }
            "like" => {
                arity(&op, args, 2)?;
                let (a, b) = self.pair(&args[0], &args[1])?;
                for o in [&a, &b] {
                    if !matches!(o.kind(), None | Some(Kind::String)) {
                        return Err(invalid("LIKE compares strings"));
                    }
                }
                Expr::Like(a, b)
            }
            "in" => {
                arity(&op, args, 2)?;
                let list = args[1]
                    .as_array()
                    .ok_or_else(|| invalid("IN needs a list of values"))?;
                let item = self.operand(&args[0], None)?;
                let kind = item.kind();
                let list: Vec<Operand> = list
                    .iter()
                    .map(|v| self.operand(v, kind))
                    .collect::<Result<_, _>>()?;
                for l in &list {
                    check_literal(l, &item)?;
                }
                Expr::In(item, list)
            }
            "between" => {
                arity(&op, args, 3)?;
                let item = self.operand(&args[0], None)?;
                let kind = item.kind();
                let (lo, hi) = (self.operand(&args[1], kind)?, self.operand(&args[2], kind)?);
                check_literal(&lo, &item)?;
                check_literal(&hi, &item)?;
                Expr::Between(item, lo, hi)
            }
            "isnull" => {
                arity(&op, args, 1)?;
                Expr::IsNull(self.operand(&args[0], None)?)
            }
            "s_intersects" => {
                arity(&op, args, 2)?;
                Expr::Intersects(self.spatial_pair(&args[0], &args[1])?)
            }
            "s_dwithin" => {
                if !(3..=4).contains(&args.len()) {
                    return Err(invalid(format!(
                        "S_DWITHIN takes a geometry property, a geometry and a distance in metres, got {} arguments",
                        args.len()
                    )));
                }
                let shape = self.spatial_pair(&args[0], &args[1])?;
                if matches!(shape, Shape::BBox(_)) {
                    return Err(CqlError::Unsupported(
                        "S_DWITHIN with a BBOX (use a POLYGON)".into(),
                    ));
                }
                let d = args[2]
                    .as_f64()
                    .filter(|d| d.is_finite() && *d >= 0.0)
                    .ok_or_else(|| {
                        invalid(format!(
                            "S_DWITHIN's distance must be a number of metres >= 0, got {}",
                            args[2]
                        ))
                    })?;
                let scale = match args.get(3) {
                    None => 1.0,
                    Some(unit) => {
                        let name = unit
                            .get("property")
                            .or(Some(unit))
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        match name.to_ascii_lowercase().as_str() {
                            "m" | "meters" | "metres" => 1.0,
                            "km" | "kilometers" | "kilometres" => 1000.0,
                            _ => {
                                return Err(invalid(format!(
                                    "S_DWITHIN's unit must be meters or kilometers, got {unit}"
                                )));
                            }
                        }
                    }
                };
                Expr::DWithin(shape, d * scale)
            }
            t if t.starts_with("t_") => {
                let top = TemporalOp::parse(t)
                    .ok_or_else(|| CqlError::Unsupported(format!("the function {op}")))?;
                arity(&op, args, 2)?;
                Expr::Temporal(top, self.temporal(&args[0])?, self.temporal(&args[1])?)
            }
            other => return Err(CqlError::Unsupported(format!("the operator {other}"))),
        })
    }

    /// Two operands compared with each other; a literal takes the type of the
    /// property it is compared with.
    fn pair(&self, a: &Value, b: &Value) -> Result<(Operand, Operand), CqlError> {
        let first = self.operand(a, None)?;
        let second = self.operand(b, first.kind())?;
        let first = match (first.kind(), second.kind()) {
            (None, Some(k)) => self.operand(a, Some(k))?,
            _ => first,
        };
        if let (Some(x), Some(y)) = (first.kind(), second.kind())
            && x != y
        {
            return Err(invalid(format!("cannot compare a {x:?} with a {y:?}")));
        }
        check_literal(&first, &second)?;
        check_literal(&second, &first)?;
        Ok((first, second))
    }

    fn operand(&self, v: &Value, want: Option<Kind>) -> Result<Operand, CqlError> {
        Ok(match v {
            Value::Null => Operand::Literal(Scalar::Null),
            Value::Bool(b) => Operand::Literal(Scalar::Bool(*b)),
            Value::Number(n) => Operand::Literal(Scalar::Num(
                n.as_f64().ok_or_else(|| invalid("a number out of range"))?,
            )),
            Value::String(s) => match want {
                Some(Kind::Timestamp) => Operand::Literal(Scalar::Time(
                    Timestamp::parse("filter", s).map_err(|e| invalid(e.reason))?,
                )),
                _ => Operand::Literal(Scalar::Str(s.clone())),
            },
            Value::Object(o) => {
                if let Some(name) = o.get("property").and_then(Value::as_str) {
                    let q = self.queryable(name)?;
                    if q.kind == Kind::Geometry {
                        return Err(invalid(format!(
                            "{name} is a geometry: use S_INTERSECTS or S_DWITHIN"
                        )));
                    }
                    Operand::Property(name.to_owned(), q.kind)
                } else if let Some(t) = o.get("timestamp").and_then(Value::as_str) {
                    Operand::Literal(Scalar::Time(
                        Timestamp::parse("filter", t).map_err(|e| invalid(e.reason))?,
                    ))
                } else if let Some(d) = o.get("date").and_then(Value::as_str) {
                    // A date compared with instants stands for its first moment.
                    match Interval::parse_end(d, false).map_err(invalid)? {
                        Bound::At(t) => Operand::Literal(Scalar::Time(t)),
                        _ => return Err(invalid("a date must not be open")),
                    }
                } else if let Some(inner) = o.get("casei") {
                    Operand::CaseI(Box::new(self.operand(inner, want)?))
                } else if let Some((op, args)) = op_and_args(v) {
                    if op == "casei" && args.len() == 1 {
                        Operand::CaseI(Box::new(self.operand(&args[0], want)?))
                    } else {
                        return Err(CqlError::Unsupported(format!("the function {op}")));
                    }
                } else {
                    return Err(invalid(format!(
                        "expected a property or a value, found {v}"
                    )));
                }
            }
            Value::Array(_) => return Err(invalid("a list is only allowed after IN")),
        })
    }

    fn spatial_pair(&self, a: &Value, b: &Value) -> Result<Shape, CqlError> {
        let is_geometry_property = |v: &Value| {
            v.get("property")
                .and_then(Value::as_str)
                .is_some_and(|name| self.queryable(name).is_ok_and(|q| q.kind == Kind::Geometry))
        };
        let literal = if is_geometry_property(a) {
            b
        } else if is_geometry_property(b) {
            a
        } else {
            if let Some(name) = [a, b]
                .iter()
                .find_map(|v| v.get("property").and_then(Value::as_str))
            {
                self.queryable(name)?;
                return Err(invalid(format!("{name} is not a geometry")));
            }
            return Err(invalid(
                "a spatial function compares the geometry property with a geometry",
            ));
        };
        shape_literal(literal)
    }

    fn temporal(&self, v: &Value) -> Result<TimeOperand, CqlError> {
        if let Some(name) = v.get("property").and_then(Value::as_str) {
            let q = self.queryable(name)?;
            if q.kind != Kind::Timestamp {
                return Err(invalid(format!("{name} is not a time")));
            }
            return Ok(TimeOperand::Property(name.to_owned()));
        }
        let end_of = |v: &Value, end: bool| -> Result<Bound, CqlError> {
            let raw = v
                .as_str()
                .or_else(|| v.get("timestamp").and_then(Value::as_str))
                .or_else(|| v.get("date").and_then(Value::as_str))
                .ok_or_else(|| invalid(format!("expected a time, found {v}")))?;
            Interval::parse_end(raw, end).map_err(invalid)
        };
        if let Some(ends) = v.get("interval").and_then(Value::as_array) {
            let [a, b] = ends.as_slice() else {
                return Err(invalid("an INTERVAL has two ends"));
            };
            let i = Interval {
                start: end_of(a, false)?,
                end: end_of(b, true)?,
            };
            if i.start > i.end {
                return Err(invalid("the interval starts after it ends"));
            }
            return Ok(TimeOperand::Literal(i));
        }
        if let Some(t) = v.get("timestamp").and_then(Value::as_str) {
            let t = Timestamp::parse("filter", t).map_err(|e| invalid(e.reason))?;
            return Ok(TimeOperand::Literal(Interval::instant(t)));
        }
        if v.get("date").is_some() {
            // A date is the whole day.
            return Ok(TimeOperand::Literal(Interval {
                start: end_of(v, false)?,
                end: end_of(v, true)?,
            }));
        }
        Err(invalid(format!(
            "expected a time property, TIMESTAMP, DATE or INTERVAL, found {v}"
        )))
    }
}

/// Reads a geometry literal: GeoJSON (as CQL2 JSON carries WKT too) or a bbox.
fn shape_literal(v: &Value) -> Result<Shape, CqlError> {
    if let Some(b) = v.get("bbox").and_then(Value::as_array) {
        let nums = b
            .iter()
            .map(|n| n.as_f64().ok_or_else(|| invalid("BBOX takes numbers")))
            .collect::<Result<Vec<_>, _>>()?;
        let nums = match nums.as_slice() {
            [w, s, _, e, n, _] => vec![*w, *s, *e, *n],
            _ => nums,
        };
        return BBox::parse("filter", &nums)
            .map(Shape::BBox)
            .map_err(|e| invalid(format!("BBOX: {}", e.reason)));
    }
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    let place = |g: &Value| Place::parse("geometry", g).map_err(|e| invalid(format!("{e}")));
    match kind {
        "Point" | "Polygon" | "MultiPolygon" => Ok(Shape::Places(vec![place(v)?])),
        "MultiPoint" => {
            let coords = v
                .get("coordinates")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("a MultiPoint needs coordinates"))?;
            if coords.is_empty() {
                return Err(invalid("a MultiPoint needs at least one point"));
            }
            coords
                .iter()
                .map(|c| place(&serde_json::json!({"type": "Point", "coordinates": c})))
                .collect::<Result<_, _>>()
                .map(Shape::Places)
        }
        "" => Err(invalid(format!("expected a geometry, found {v}"))),
        other => Err(CqlError::Unsupported(format!(
            "a {other} in a filter (use a POINT, MULTIPOINT, POLYGON, MULTIPOLYGON or BBOX)"
        ))),
    }
}

/// Refuses a literal of the wrong type for the property it meets, such as
/// `count = 'three'`, which could never match.
fn check_literal(literal: &Operand, other: &Operand) -> Result<(), CqlError> {
    let (Operand::Literal(v), Some(kind)) = (literal.unwrapped(), other.kind()) else {
        return Ok(());
    };
    let fits = matches!(
        (kind, v),
        (_, Scalar::Null)
            | (Kind::String, Scalar::Str(_))
            | (Kind::Integer, Scalar::Num(_))
            | (Kind::Boolean, Scalar::Bool(_))
            | (Kind::Timestamp, Scalar::Time(_))
    );
    if fits {
        Ok(())
    } else {
        Err(invalid(format!(
            "{} cannot be compared with a {kind:?} property",
            v.to_json()
        )))
    }
}

impl Operand {
    fn unwrapped(&self) -> &Operand {
        match self {
            Operand::CaseI(inner) => inner.unwrapped(),
            other => other,
        }
    }

    fn kind(&self) -> Option<Kind> {
        match self {
            Operand::Property(_, k) => Some(*k),
            Operand::Literal(_) => None,
            Operand::CaseI(inner) => inner.kind(),
        }
    }

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

/// Whether a geometry meets a query shape. A BBOX is read as `bbox` is: a
/// rectangle in longitude and latitude, crossing the antimeridian when west > east.
pub fn intersects(g: Geom<'_>, shape: &Shape) -> bool {
    match shape {
        Shape::BBox(b) => geom_meets_bbox(g, b),
        Shape::Places(places) => places.iter().any(|p| geom_meets_place(g, p)),
    }
}

fn geom_meets_place(g: Geom<'_>, p: &Place) -> bool {
    match (g, p) {
        (Geom::Point(a), Place::Point(b)) => a == *b,
        (Geom::Point(a), Place::Area(f)) | (Geom::Area(f), &Place::Point(a)) => {
            f.shape().contains(geodesy::to_unit(a.to_array()))
        }
        (Geom::Area(f), Place::Area(q)) => f.shape().intersects(q.shape()),
    }
}

/// Whether a geometry meets a lon/lat box, in the plane of longitude and
/// latitude (the reading of `bbox` the index uses for sites).
pub fn geom_meets_bbox(g: Geom<'_>, b: &BBox) -> bool {
    match g {
        Geom::Point(p) => b
            .pieces()
            .iter()
            .any(|[w, s, e, n]| (*w..=*e).contains(&p.lon()) && (*s..=*n).contains(&p.lat())),
        Geom::Area(f) => crate::index::footprint_meets_bbox(f, b),
    }
}

/// Whether a geometry lies within `d` metres of a query shape (geodesic metres
/// on WGS84, measured between the nearest points; 0 when they meet).
pub fn within(g: Geom<'_>, shape: &Shape, d: f64) -> bool {
    match shape {
        Shape::BBox(_) => false,
        Shape::Places(places) => places.iter().any(|p| distance(g, p, d) <= d),
    }
}

/// Geodesic metres between a geometry and a place. Any answer above `cutoff`
/// may be a lower bound rather than the distance, which is all a threshold needs.
pub fn distance(g: Geom<'_>, p: &Place, cutoff: f64) -> f64 {
    match (g, p) {
        (Geom::Point(a), Place::Point(b)) => geodesic_distance(a.to_array(), b.to_array()),
        (Geom::Point(a), Place::Area(f)) | (Geom::Area(f), &Place::Point(a)) => {
            f.shape().distance_m(a.to_array())
        }
        (Geom::Area(f), Place::Area(q)) => {
            let (a, b) = (f.shape(), q.shape());
            // The caps around the two shapes bound how close they can come.
            let gap = geodesy::angle(a.centre(), b.centre()) - a.radius() - b.radius();
            let lower = min_distance_for_angle(gap.max(0.0));
            if lower > cutoff {
                return lower;
            }
            if a.intersects(b) {
                return 0.0;
            }
            // Two disjoint areas are nearest between a vertex of one and an edge
            // of the other.
            let from = |x: &Footprint, to: &crate::geodesy::SphericalShape| {
                x.parts()
                    .iter()
                    .flatten()
                    .flatten()
                    .map(|v| to.distance_m(*v))
                    .fold(f64::INFINITY, f64::min)
            };
            from(f, b).min(from(q, a))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const Q: &[Queryable] = &[
        Queryable {
            name: "name",
            kind: Kind::String,
            description: "",
            values: &[],
        },
        Queryable {
            name: "count",
            kind: Kind::Integer,
            description: "",
            values: &[],
        },
        Queryable {
            name: "seen",
            kind: Kind::Timestamp,
            description: "",
            values: &[],
        },
        Queryable {
            name: "geometry",
            kind: Kind::Geometry,
            description: "",
            values: &[],
        },
    ];

    struct Thing {
        name: Option<&'static str>,
        count: f64,
        seen: Option<&'static str>,
        place: Place,
    }

    impl Record for Thing {
        fn property(&self, name: &str) -> Scalar {
            match name {
                "name" => self
                    .name
                    .map_or(Scalar::Null, |n| Scalar::Str(n.to_owned())),
                "count" => Scalar::Num(self.count),
                "seen" => self.seen.map_or(Scalar::Null, |t| {
                    Scalar::Time(Timestamp::parse("t", t).unwrap())
                }),
                _ => Scalar::Null,
            }
        }
        fn geometry(&self) -> Option<Geom<'_>> {
            Some((&self.place).into())
        }
    }

    fn thing(name: Option<&'static str>, lon: f64, lat: f64) -> Thing {
        Thing {
            name,
            count: 3.0,
            seen: Some("2018-05-24T02:00:00Z"),
            place: Place::parse("g", &json!({"type": "Point", "coordinates": [lon, lat]})).unwrap(),
        }
    }

    fn text(f: &str) -> Expr {
        parse(f, Lang::Text, Q).unwrap_or_else(|e| panic!("{f}: {e}"))
    }

    fn yes(f: &str, t: &Thing) -> bool {
        text(f).matches(t)
    }

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
    fn spatial_predicates_measure_metres_on_the_ellipsoid() {
        let t = thing(Some("x"), 125.0, 39.0);
        // 0.01° of latitude at 39°N is about 1,110 m.
        assert!(yes("S_DWITHIN(geometry, POINT(125 39.01), 1120)", &t));
        assert!(!yes("S_DWITHIN(geometry, POINT(125 39.01), 1100)", &t));
        assert!(yes(
            "S_DWITHIN(geometry, POINT(125 39.01), 1.12, kilometers)",
            &t
        ));
        assert!(yes("S_INTERSECTS(geometry, BBOX(124, 38, 126, 40))", &t));
        assert!(yes(
            "S_INTERSECTS(geometry, POLYGON((124 38, 126 38, 126 40, 124 40, 124 38)))",
            &t
        ));
        assert!(!yes("S_INTERSECTS(geometry, BBOX(126, 38, 127, 40))", &t));
        let east = thing(Some("x"), 179.99, 0.0);
        assert!(yes("S_INTERSECTS(geometry, BBOX(170, -1, -170, 1))", &east));
    }

    #[test]
    fn area_to_area_distance_is_between_nearest_points() {
        let square = |lon: f64| {
            Place::parse(
                "g",
                &json!({"type": "Polygon", "coordinates": [[[lon, 0.0], [lon + 0.01, 0.0], [lon + 0.01, 0.01], [lon, 0.01], [lon, 0.0]]]}),
            )
            .unwrap()
        };
        let (a, b) = (square(0.0), square(0.02));
        let d = distance((&a).into(), &b, f64::INFINITY);
        // 0.01° of longitude on the equator is 1,113.2 m.
        assert!((d - 1113.19).abs() < 0.5, "{d}");
        assert_eq!(distance((&a).into(), &square(0.005), f64::INFINITY), 0.0);
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

    #[test]
    fn unknown_properties_bad_syntax_and_type_clashes_are_refused() {
        assert!(matches!(
            parse("colour = 'red'", Lang::Text, Q),
            Err(CqlError::UnknownProperty { .. })
        ));
        assert!(matches!(
            parse("name = ", Lang::Text, Q),
            Err(CqlError::Syntax { .. })
        ));
        assert!(parse("count = 'three'", Lang::Text, Q).is_err());
        assert!(parse("seen > 'yesterday'", Lang::Text, Q).is_err());
        assert!(parse("S_INTERSECTS(name, POINT(0 0))", Lang::Text, Q).is_err());
        assert!(parse("{\"op\": 1}", Lang::Json, Q).is_err());
    }

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
