//! Query-string parameters turned into domain values, with errors naming the
//! parameter.

use super::error::ApiError;
use crate::index::Filter;
use crate::model::{BBox, LonLat, Meters};
use crate::query::QueryError;
use crate::query::cql::Interval;

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        ApiError::bad(e.parameter(), e.to_string())
    }
}

/// The raw `key=value` pairs of a query string.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .map(Self)
            .map_err(|e| ApiError::bad("query", format!("the query string cannot be read: {e}")))
    }

    /// The value of a parameter; giving one twice is an error, not a guess.
    pub fn get(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut found = self
            .0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = found.next();
        if found.next().is_some() {
            return Err(ApiError::bad(
                name,
                format!("{name} is given more than once"),
            ));
        }
        Ok(first.filter(|v| !v.is_empty()))
    }

    /// The value of a typed parameter (a number, time, boolean or box): like
    /// [`Params::get`], but an empty value is an error, since it is no value of
    /// the type.
    pub fn typed(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let given = self.0.iter().any(|(k, _)| k == name);
        match self.get(name)? {
            None if given => Err(ApiError::bad(name, format!("{name} is empty"))),
            v => Ok(v),
        }
    }

    pub fn f64(&self, name: &str) -> Result<Option<f64>, ApiError> {
        self.typed(name)?
            .map(|v| match v.trim().parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(x),
                _ => Err(ApiError::bad(
                    name,
                    format!("{name} must be a finite number, got {v:?}"),
                )),
            })
            .transpose()
    }

    pub fn required_f64(&self, name: &str) -> Result<f64, ApiError> {
        self.f64(name)?
            .ok_or_else(|| ApiError::bad(name, format!("{name} is required")))
    }

    /// A count of results: at least 1; above `max` it is clamped to `max`.
    /// Numbers beyond a signed 64-bit integer are refused: the API definition
    /// declares `limit` as one.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.typed("limit")? {
            None => Ok(default),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(0) => Err(ApiError::bad("limit", "limit must be at least 1")),
                Ok(n) if n > i64::MAX as u64 => Err(ApiError::bad(
                    "limit",
                    format!("limit must be below 2^63, got {v}"),
                )),
                Ok(n) => Ok(n.min(max as u64) as usize),
                Err(_) => Err(ApiError::bad(
                    "limit",
                    format!("limit must be a positive whole number, got {v:?}"),
                )),
            },
        }
    }

    /// A page size as [`Params::limit`] reads it, and the value asked for when
    /// it was above `max` and clamped, so the answer can say so.
    pub fn limit_clamped(
        &self,
        default: usize,
        max: usize,
    ) -> Result<(usize, Option<u64>), ApiError> {
        let limit = self.limit(default, max)?;
        let asked = self
            .typed("limit")?
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&n| n > max as u64);
        Ok((limit, asked))
    }

    /// A comma-separated list of values, empty when the parameter is absent.
    pub fn list(&self, name: &str) -> Result<Vec<String>, ApiError> {
        Ok(self
            .get(name)?
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The OGC API `datetime` parameter: an instant, a date, or an interval
    /// `start/end` with `..` for an open end.
    pub fn datetime(&self) -> Result<Option<Interval>, ApiError> {
        self.typed("datetime")?
            .map(|raw| {
                Interval::parse_datetime(raw)
                    .map_err(|why| ApiError::bad("datetime", format!("datetime {raw:?}: {why}")))
            })
            .transpose()
    }

    pub fn point(&self) -> Result<LonLat, ApiError> {
        let lon = self.required_f64("lon")?;
        let lat = self.required_f64("lat")?;
        LonLat::parse("lon", lon, 0.0)?;
        Ok(LonLat::parse("lat", lon, lat)?)
    }

    pub fn metres(&self, name: &str) -> Result<Option<Meters>, ApiError> {
        self.f64(name)?
            .map(|m| Meters::parse(name, m).map_err(ApiError::from))
            .transpose()
    }

    pub fn timestamp(&self, name: &str) -> Result<Option<crate::model::Timestamp>, ApiError> {
        Ok(self
            .typed(name)?
            .map(|v| crate::model::Timestamp::parse(name, v))
            .transpose()?)
    }

    pub fn bbox(&self) -> Result<Option<BBox>, ApiError> {
        let Some(raw) = self.typed("bbox")? else {
            return Ok(None);
        };
        let nums = raw
            .split(',')
            .map(|p| {
                p.trim().parse::<f64>().map_err(|_| {
                    ApiError::bad(
                        "bbox",
                        format!("bbox must be 4 comma-separated numbers, got {raw:?}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(BBox::parse("bbox", &nums)?))
    }

    /// The site filters shared by every site query.
    pub fn filter(&self) -> Result<Filter, ApiError> {
        let mut lists = std::collections::HashMap::new();
        for name in [
            "declaration",
            "kind",
            "status",
            "country",
            "position_quality",
        ] {
            if let Some(v) = self.get(name)? {
                lists.insert(name, v);
            }
        }
        Ok(Filter::from_lists(|name| lists.get(name).copied())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Declaration;

    fn param_of(e: ApiError) -> String {
        match e {
            ApiError::BadRequest { param, .. } => param,
            other => panic!("not a bad request: {other}"),
        }
    }

    #[test]
    fn a_latitude_of_91_is_refused_naming_lat() {
        assert_eq!(
            param_of(Params::parse("lon=0&lat=91").unwrap().point().unwrap_err()),
            "lat"
        );
        assert_eq!(
            param_of(Params::parse("lon=200&lat=1").unwrap().point().unwrap_err()),
            "lon"
        );
    }

    #[test]
    fn a_bbox_of_three_numbers_is_refused() {
        assert_eq!(
            param_of(Params::parse("bbox=1,2,3").unwrap().bbox().unwrap_err()),
            "bbox"
        );
        assert_eq!(
            param_of(Params::parse("bbox=a,b,c,d").unwrap().bbox().unwrap_err()),
            "bbox"
        );
    }

    #[test]
    fn limits_must_be_positive_numbers_and_large_ones_are_clamped() {
        assert_eq!(
            param_of(
                Params::parse("limit=abc")
                    .unwrap()
                    .limit(10, 100)
                    .unwrap_err()
            ),
            "limit"
        );
        assert_eq!(
            param_of(
                Params::parse("limit=0")
                    .unwrap()
                    .limit(10, 100)
                    .unwrap_err()
            ),
            "limit"
        );
        assert_eq!(
            Params::parse("limit=1000000000000")
                .unwrap()
                .limit(10, 100)
                .unwrap(),
            100
        );
        assert_eq!(Params::parse("").unwrap().limit(10, 100).unwrap(), 10);
    }

    #[test]
    fn a_negative_radius_and_nan_are_refused() {
        assert_eq!(
            param_of(
                Params::parse("radius_m=-5")
                    .unwrap()
                    .metres("radius_m")
                    .unwrap_err()
            ),
            "radius_m"
        );
        assert_eq!(
            param_of(
                Params::parse("radius_m=NaN")
                    .unwrap()
                    .metres("radius_m")
                    .unwrap_err()
            ),
            "radius_m"
        );
    }

    #[test]
    fn filters_take_comma_separated_values_and_refuse_unknown_ones() {
        let f = Params::parse("declaration=declared,undeclared&kind=reactor")
            .unwrap()
            .filter()
            .unwrap();
        assert_eq!(
            f.declaration,
            [Declaration::Declared, Declaration::Undeclared]
        );
        assert_eq!(
            param_of(Params::parse("status=busy").unwrap().filter().unwrap_err()),
            "status"
        );
    }

    #[test]
    fn a_clamped_limit_reports_what_was_asked_for() {
        let p = Params::parse("limit=20000").unwrap();
        assert_eq!(
            p.limit_clamped(100, 10_000).unwrap(),
            (10_000, Some(20_000))
        );
        let p = Params::parse("limit=50").unwrap();
        assert_eq!(p.limit_clamped(100, 10_000).unwrap(), (50, None));
    }

    #[test]
    fn a_datetime_that_is_not_a_time_or_interval_names_datetime() {
        assert!(
            Params::parse("datetime=2018-01-01T00:00:00Z/..")
                .unwrap()
                .datetime()
                .unwrap()
                .is_some()
        );
        assert_eq!(
            param_of(
                Params::parse("datetime=soon")
                    .unwrap()
                    .datetime()
                    .unwrap_err()
            ),
            "datetime"
        );
    }

    #[test]
    fn an_empty_typed_parameter_is_refused_but_an_empty_filter_is_no_filter() {
        assert_eq!(
            param_of(
                Params::parse("as_of=")
                    .unwrap()
                    .timestamp("as_of")
                    .unwrap_err()
            ),
            "as_of"
        );
        assert_eq!(
            param_of(Params::parse("limit=").unwrap().limit(1, 2).unwrap_err()),
            "limit"
        );
        assert!(Params::parse("kind=").unwrap().filter().is_ok());
        assert_eq!(
            param_of(
                Params::parse("limit=9223372036854775808")
                    .unwrap()
                    .limit(1, 2)
                    .unwrap_err()
            ),
            "limit"
        );
    }

    #[test]
    fn a_parameter_given_twice_is_refused() {
        assert_eq!(
            param_of(
                Params::parse("lat=1&lat=2")
                    .unwrap()
                    .get("lat")
                    .unwrap_err()
            ),
            "lat"
        );
    }
}
