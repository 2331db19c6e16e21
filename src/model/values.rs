//! Newtypes for values that are easy to mix up: ids, country codes, metres, times,
//! positions and boxes. Each has exactly one constructor from raw input.

use super::FieldError;
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Serialize, Serializer};
use std::fmt;

/// A site's stable id: 1-64 characters of ASCII letters, digits, `-`, `_` and `.`,
/// starting with a letter or digit, so that it is safe in a URL path and a file name.
// Held inline up to 24 bytes, as most ids are: a million of them live in the
// index, the statistics and the sites by time, and cloning one allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SiteId(compact_str::CompactString);

impl SiteId {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if raw.is_empty() || raw.len() > 64 {
            return Err(FieldError::new(field, "must be 1 to 64 characters"));
        }
        if !raw.starts_with(|c: char| c.is_ascii_alphanumeric()) || !raw.chars().all(ok_char) {
            return Err(FieldError::new(
                field,
                format!(
                    "{raw:?} is not a valid id: use letters, digits, '-', '_' and '.', starting with a letter or digit"
                ),
            ));
        }
        Ok(Self(raw.into()))
    }

    /// A new unique id for a site that arrived without one.
    pub fn generate() -> Self {
        Self(new_id("site").into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Lets maps keyed by id be looked up with a plain `&str`; ids hash as their text.
impl std::borrow::Borrow<str> for SiteId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ISO 3166-1 alpha-3 country code (three upper-case letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 3]);

impl CountryCode {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        match raw.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(FieldError::new(
                field,
                format!(
                    "{raw:?} is not an ISO 3166-1 alpha-3 code (three upper-case letters, e.g. PRK)"
                ),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters get in.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl Serialize for CountryCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A length in metres: finite and not negative.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct Meters(f64);

impl Meters {
    pub fn parse(field: &str, value: f64) -> Result<Self, FieldError> {
        if value.is_finite() && value >= 0.0 {
            Ok(Self(value))
        } else {
            Err(FieldError::new(
                field,
                format!("must be a finite number of metres >= 0, got {value}"),
            ))
        }
    }

    /// For values computed by the program itself, which are finite and >= 0 by construction.
    pub(crate) fn from_computed(value: f64) -> Self {
        Self(value.max(0.0))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// An instant in UTC, read from and written as RFC 3339. It holds whole
/// microseconds, as it is written, so a time compares the same before and after
/// a round trip through the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        DateTime::parse_from_rfc3339(raw)
            .map(|t| Self(t.with_timezone(&Utc).trunc_subsecs(6)))
            .map_err(|e| FieldError::new(field, format!("{raw:?} is not an RFC 3339 time ({e})")))
    }

    pub fn now() -> Self {
        Self(Utc::now().trunc_subsecs(6))
    }

    /// The calendar day in UTC.
    /// Seconds since 1970-01-01T00:00:00Z, for indexes that order by number.
    pub fn epoch_seconds(self) -> f64 {
        self.0.timestamp_micros() as f64 / 1e6
    }

    /// Microseconds since 1970-01-01T00:00:00Z.
    pub fn epoch_micros(self) -> i64 {
        self.0.timestamp_micros()
    }

    /// The moment `micros` microseconds after 1970-01-01T00:00:00Z, clamped to
    /// the years 1 to 9999 that RFC 3339 can write.
    pub fn from_epoch_micros(micros: i64) -> Self {
        const MIN: i64 = -62_135_596_800_000_000;
        const MAX: i64 = 253_402_300_799_999_999;
        Self(DateTime::from_timestamp_micros(micros.clamp(MIN, MAX)).unwrap_or_default())
    }

    pub fn date(self) -> chrono::NaiveDate {
        self.0.date_naive()
    }

    pub fn to_rfc3339(self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A WGS84 position, `[lon, lat]` in degrees as in RFC 7946, finite and in range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LonLat {
    lon: f64,
    lat: f64,
}

impl LonLat {
    /// `field` names the pair (for example `geometry.coordinates[0][2]`); the
    /// longitude and latitude are checked separately so the message says which.
    pub fn parse(field: &str, lon: f64, lat: f64) -> Result<Self, FieldError> {
        if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
            return Err(FieldError::new(
                field,
                format!("longitude {lon} is outside [-180, 180]"),
            ));
        }
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(FieldError::new(
                field,
                format!("latitude {lat} is outside [-90, 90]"),
            ));
        }
        Ok(Self { lon, lat })
    }

    /// For positions the program computed itself (centres, projections): clamped
    /// into range, which only rounding could have left.
    pub(crate) fn from_computed(lon: f64, lat: f64) -> Self {
        Self {
            lon: lon.clamp(-180.0, 180.0),
            lat: lat.clamp(-90.0, 90.0),
        }
    }

    pub fn lon(self) -> f64 {
        self.lon
    }

    pub fn lat(self) -> f64 {
        self.lat
    }

    pub fn to_array(self) -> [f64; 2] {
        [self.lon, self.lat]
    }
}

/// A lon/lat box `[west, south, east, north]`. Following RFC 7946 §5.2, `west >
/// east` means the box crosses the antimeridian.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BBox {
    pub west: f64,
    pub south: f64,
    pub east: f64,
    pub north: f64,
}

impl BBox {
    pub fn parse(field: &str, values: &[f64]) -> Result<Self, FieldError> {
        let [west, south, east, north] = values else {
            return Err(FieldError::new(
                field,
                format!(
                    "expected 4 numbers minLon,minLat,maxLon,maxLat, got {}",
                    values.len()
                ),
            ));
        };
        LonLat::parse(field, *west, *south)?;
        LonLat::parse(field, *east, *north)?;
        if south > north {
            return Err(FieldError::new(
                field,
                format!("minLat {south} is greater than maxLat {north}"),
            ));
        }
        Ok(Self {
            west: *west,
            south: *south,
            east: *east,
            north: *north,
        })
    }

    /// The box as one or two `[west, south, east, north]` pieces that do not cross
    /// the antimeridian.
    pub fn pieces(&self) -> Vec<[f64; 4]> {
        if self.west <= self.east {
            vec![[self.west, self.south, self.east, self.north]]
        } else {
            vec![
                [self.west, self.south, 180.0, self.north],
                [-180.0, self.south, self.east, self.north],
            ]
        }
    }
}

/// What a text field is for, which decides the invisible characters it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextKind {
    /// A name, title or label, by which a reader tells one record from
    /// another: bidirectional controls are refused, as they can make one name
    /// display as another (the "Trojan Source" trick, CVE-2021-42574).
    Label,
    /// Free prose, where right-to-left writing legitimately uses the marks.
    Prose,
}

/// The bidirectional formatting characters: each reorders how the text around
/// it is displayed without being visible itself.
const BIDI_CONTROLS: &[(char, &str)] = &[
    ('\u{061C}', "ARABIC LETTER MARK"),
    ('\u{200E}', "LEFT-TO-RIGHT MARK"),
    ('\u{200F}', "RIGHT-TO-LEFT MARK"),
    ('\u{202A}', "LEFT-TO-RIGHT EMBEDDING"),
    ('\u{202B}', "RIGHT-TO-LEFT EMBEDDING"),
    ('\u{202C}', "POP DIRECTIONAL FORMATTING"),
    ('\u{202D}', "LEFT-TO-RIGHT OVERRIDE"),
    ('\u{202E}', "RIGHT-TO-LEFT OVERRIDE"),
    ('\u{2066}', "LEFT-TO-RIGHT ISOLATE"),
    ('\u{2067}', "RIGHT-TO-LEFT ISOLATE"),
    ('\u{2068}', "FIRST STRONG ISOLATE"),
    ('\u{2069}', "POP DIRECTIONAL ISOLATE"),
];

/// Refuses the characters a text of `kind` may not hold, naming the first and
/// where it is: NUL in any text (C tools and many exports end a string there,
/// so two systems would read different values), and bidirectional controls in
/// a label.
pub(crate) fn refuse_hidden_characters(
    field: &str,
    text: &str,
    kind: TextKind,
) -> Result<(), FieldError> {
    for (i, c) in text.chars().enumerate() {
        let at = i + 1;
        if c == '\0' {
            return Err(FieldError::new(
                field,
                format!("contains a NUL character (U+0000) at character {at}"),
            ));
        }
        if kind == TextKind::Label
            && let Some((_, name)) = BIDI_CONTROLS.iter().find(|(b, _)| *b == c)
        {
            return Err(FieldError::new(
                field,
                format!(
                    "contains the bidirectional control character U+{:04X} {name} at character {at}; it changes how the text is displayed and is not allowed here",
                    c as u32
                ),
            ));
        }
    }
    Ok(())
}

/// A new unique id, `{prefix}-` and a lower-case ULID, made the same way
/// whichever store or command makes it: ids sort by the millisecond they were
/// made in.
pub fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        ulid::Ulid::generate().to_string().to_ascii_lowercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_ids_with_path_separators_or_sql_are_refused() {
        for bad in [
            "",
            "../etc",
            "a/b",
            "x'; DROP TABLE sites;--",
            ".hidden",
            "a b",
        ] {
            assert!(SiteId::parse("id", bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            SiteId::parse("id", "punggye-ri").unwrap().as_str(),
            "punggye-ri"
        );
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let (a, b) = (SiteId::generate(), SiteId::generate());
        assert_ne!(a, b);
        assert!(SiteId::parse("id", a.as_str()).is_ok());
    }

    #[test]
    fn country_codes_must_be_three_upper_case_letters() {
        assert!(CountryCode::parse("country", "PRK").is_ok());
        for bad in ["prk", "KP", "PRKX", "P1K"] {
            assert!(CountryCode::parse("country", bad).is_err());
        }
    }

    #[test]
    fn positions_out_of_range_name_the_coordinate_that_is_wrong() {
        assert!(
            LonLat::parse("p", 181.0, 0.0)
                .unwrap_err()
                .reason
                .contains("longitude")
        );
        assert!(
            LonLat::parse("p", 0.0, 91.0)
                .unwrap_err()
                .reason
                .contains("latitude")
        );
        assert!(LonLat::parse("p", f64::NAN, 0.0).is_err());
    }

    #[test]
    fn a_bbox_with_west_greater_than_east_crosses_the_antimeridian() {
        let b = BBox::parse("bbox", &[170.0, -10.0, -170.0, 10.0]).unwrap();
        assert_eq!(b.pieces().len(), 2);
        assert!(BBox::parse("bbox", &[0.0, 10.0, 1.0, 5.0]).is_err());
        assert!(BBox::parse("bbox", &[0.0, 1.0, 2.0]).is_err());
    }

    #[test]
    fn timestamps_must_be_rfc3339_and_are_normalised_to_utc() {
        let t = Timestamp::parse("t", "2018-05-24T11:00:00+09:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2018-05-24T02:00:00.000000Z");
        assert!(Timestamp::parse("t", "2018-05-24").is_err());
    }

    #[test]
    fn metres_must_be_finite_and_not_negative() {
        assert!(Meters::parse("radius_m", -5.0).is_err());
        assert!(Meters::parse("radius_m", f64::INFINITY).is_err());
        assert_eq!(Meters::parse("radius_m", 10.0).unwrap().get(), 10.0);
    }

    #[test]
    fn nul_is_refused_in_any_text_and_bidi_controls_only_in_labels() {
        let err =
            refuse_hidden_characters("properties.notes", "a\0b", TextKind::Prose).unwrap_err();
        assert_eq!(err.field, "properties.notes");
        assert_eq!(
            err.reason,
            "contains a NUL character (U+0000) at character 2"
        );
        for (c, _) in BIDI_CONTROLS {
            let text = format!("Yongbyon{c}");
            let err =
                refuse_hidden_characters("properties.name", &text, TextKind::Label).unwrap_err();
            assert_eq!(err.field, "properties.name");
            assert!(
                err.reason.starts_with(&format!(
                    "contains the bidirectional control character U+{:04X} ",
                    *c as u32
                )),
                "{}",
                err.reason
            );
            assert!(refuse_hidden_characters("properties.notes", &text, TextKind::Prose).is_ok());
        }
        assert!(
            refuse_hidden_characters(
                "properties.name",
                "ヨンビョン 영변 يونغبيون",
                TextKind::Label
            )
            .is_ok()
        );
    }
}
