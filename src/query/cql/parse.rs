//! Reading a filter: the `cql2` crate reads CQL2 text or JSON, and its CQL2-JSON
//! form is checked here, once per request, into an [`Expr`] against a
//! collection's queryables.

use super::expr::{Bound, Cmp, Expr, Interval, Operand, Scalar, Shape, TemporalOp, TimeOperand};
use super::guard::{self, MAX_TERMS};
use super::{CqlError, Lang, invalid};
use crate::model::{BBox, Place, Timestamp};
use crate::query::properties::{Kind, Property};
use serde_json::Value;
use std::cell::Cell;

/// Reads a filter in `lang` and checks it against the queryable ones of
/// `properties`.
pub fn parse(raw: &str, lang: Lang, properties: &[Property]) -> Result<Expr, CqlError> {
    let syntax = |reason: String| CqlError::Syntax {
        lang: lang.name(),
        reason,
    };
    // The `cql2` parser only sees text whose worst case is cheap.
    let expr = match lang {
        Lang::Text => {
            guard::check_text(raw).map_err(|e| syntax(e.to_string()))?;
            cql2::parse_text(raw).map_err(|e| syntax(e.to_string()))?
        }
        Lang::Json => {
            guard::check_json(raw).map_err(|e| syntax(e.to_string()))?;
            cql2::parse_json(raw).map_err(|e| syntax(e.to_string()))?
        }
    };
    // The crate's serialised form is CQL2 JSON, whichever language came in.
    let json = serde_json::to_value(&expr).map_err(|e| syntax(e.to_string()))?;
    let checker = Checker {
        properties,
        vertices: Cell::new(0),
    };
    let expr = checker.expr(&json)?;
    // CQL2 JSON has no cap of its own on terms before this.
    if expr.terms() > MAX_TERMS {
        return Err(invalid(format!(
            "the filter has more than {MAX_TERMS} terms (properties, values and geometries)"
        )));
    }
    Ok(expr)
}

/// How many vertices the geometry literals of one filter may have in all
/// (a point is one): a spatial test costs each record about that many
/// distance computations.
pub const MAX_FILTER_VERTICES: usize = 1_000;

/// The farthest S_DWITHIN may reach, in metres: a quarter of the way round
/// the Earth. Farther, nearly every site is a candidate, and each costs a
/// distance to every vertex of the literal.
pub const MAX_DWITHIN_METRES: f64 = 10_000_000.0;

struct Checker<'q> {
    properties: &'q [Property],
    /// Vertices of the geometry literals read so far.
    vertices: Cell<usize>,
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
    fn queryables(&self) -> impl Iterator<Item = &Property> {
        self.properties.iter().filter(|p| p.queryable)
    }

    fn queryable(&self, name: &str) -> Result<&Property, CqlError> {
        self.queryables()
            .find(|q| q.name == name)
            .ok_or_else(|| CqlError::UnknownProperty {
                name: name.to_owned(),
                known: self
                    .queryables()
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
                let d = d * scale;
                if d > MAX_DWITHIN_METRES {
                    return Err(invalid(format!(
                        "S_DWITHIN's distance must be at most {MAX_DWITHIN_METRES} metres, got {d}"
                    )));
                }
                Expr::DWithin(shape, d)
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
                Some(Kind::Timestamp) => Operand::Literal(Scalar::Time(time_text(s)?)),
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
        // Counted on the JSON, before a large literal costs its parsing.
        let total = self.vertices.get() + vertices(literal);
        if total > MAX_FILTER_VERTICES {
            return Err(invalid(format!(
                "the filter's geometries have {total} vertices, more than {MAX_FILTER_VERTICES}"
            )));
        }
        self.vertices.set(total);
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

/// The positions in a GeoJSON geometry or a BBOX (a box counts one), found
/// without reading them as a geometry.
fn vertices(v: &Value) -> usize {
    fn positions(v: &Value) -> usize {
        match v.as_array() {
            Some(a) if a.first().is_some_and(Value::is_number) => 1,
            Some(a) => a.iter().map(positions).sum(),
            None => 0,
        }
    }
    if v.get("bbox").is_some() {
        return 1;
    }
    match v.get("geometries").and_then(Value::as_array) {
        Some(members) => members.iter().map(vertices).sum(),
        None => v.get("coordinates").map_or(0, positions),
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

/// A string compared with a time: an RFC 3339 time, or a date standing for
/// its first moment, also as `2018-01-01T`, which is how GDAL (3.6) writes a
/// date in CQL text.
fn time_text(s: &str) -> Result<Timestamp, CqlError> {
    let refused = |e: crate::model::FieldError| invalid(e.reason);
    let err = match Timestamp::parse("filter", s) {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    let day = s.strip_suffix('T').unwrap_or(s);
    if day.len() == 10
        && let Ok(Bound::At(t)) = Interval::parse_end(day, false)
    {
        return Ok(t);
    }
    Err(refused(err))
}

#[cfg(test)]
mod tests {
    use super::super::testing::Q;
    use super::*;

    #[test]
    fn a_time_compared_with_text_takes_an_rfc_3339_time_or_a_date_as_gdal_writes_it() {
        use super::super::testing::{thing, yes};
        let t = thing(Some("a"), 0.0, 0.0);
        assert!(yes("seen >= '2018-05-24T00:00:00Z'", &t));
        assert!(yes("seen >= '2018-05-24'", &t));
        assert!(yes("seen >= '2018-05-24T'", &t));
        assert!(!yes("seen < '2018-05-24T'", &t));
        for bad in [
            "seen >= '2018-05'",
            "seen >= '2018-05-24T02'",
            "seen >= 'T'",
        ] {
            assert!(parse(bad, Lang::Text, Q).is_err(), "{bad}");
        }
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
}
