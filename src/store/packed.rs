//! A compact binary form of a site, kept in its row of `sites` by both stores, so that opening a
//! large catalogue copies bytes instead of parsing text. The GeoJSON stays the
//! truth: a blob that does not decode is read from the feature instead, and
//! `sitewatch check` compares the two.
//!
//! Layout, little-endian: a format byte; the name; the alternative names; the
//! country's three letters; kind, declaration, status, confidence and (from
//! format 2) position quality as their place in the type's `ALL`; the sources; the notes; then the footprint as a
//! multi flag, and counts of parts, rings and positions before the `[lon, lat]`
//! pairs. A text is a `u32` byte length and UTF-8; an optional one has a
//! presence byte first.

use crate::model::{
    Confidence, CountryCode, Declaration, Footprint, PositionQuality, Site, SiteId, SiteKind,
    Source, Status,
};

/// The first byte of every blob written now; a blob in a format other than
/// this or [`FORMAT_BEFORE_POSITION_QUALITY`] is not decoded.
const FORMAT: u8 = 2;
/// Blobs written before sites had a position quality: they read as `unknown`,
/// as the GeoJSON beside them does.
const FORMAT_BEFORE_POSITION_QUALITY: u8 = 1;

/// The packed form of `site` (its id is the row's key, so it is not repeated).
pub fn encode(site: &Site) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + site.name.len() + site.footprint.vertex_count() * 16);
    out.push(FORMAT);
    put_str(&mut out, &site.name);
    put_len(&mut out, site.alt_names.len());
    for n in &site.alt_names {
        put_str(&mut out, n);
    }
    out.extend_from_slice(site.country.as_str().as_bytes());
    out.push(place(SiteKind::ALL, site.kind));
    out.push(place(Declaration::ALL, site.declaration));
    out.push(place(Status::ALL, site.status));
    out.push(place(Confidence::ALL, site.confidence));
    out.push(place(PositionQuality::ALL, site.position_quality));
    put_len(&mut out, site.sources.len());
    for s in &site.sources {
        put_str(&mut out, &s.title);
        put_opt(&mut out, s.url.as_deref());
        put_opt(&mut out, s.date.as_deref());
    }
    put_opt(&mut out, site.notes.as_deref());
    out.push(u8::from(site.footprint.is_multi()));
    let parts = site.footprint.parts();
    put_len(&mut out, parts.len());
    for rings in parts {
        put_len(&mut out, rings.len());
        for ring in rings {
            put_len(&mut out, ring.len());
            for [lon, lat] in ring {
                out.extend_from_slice(&lon.to_le_bytes());
                out.extend_from_slice(&lat.to_le_bytes());
            }
        }
    }
    out
}

/// The site `id` from its packed form; `None` if the blob is short, in another
/// format, or holds something no valid site could (an unknown enum value, a
/// ring that is not closed, a position out of range), so the caller reads the
/// GeoJSON instead. Never panics, whatever the bytes.
pub fn decode(id: &str, blob: &[u8]) -> Option<Site> {
    let mut r = Reader(blob);
    let format = r.byte()?;
    if format != FORMAT && format != FORMAT_BEFORE_POSITION_QUALITY {
        return None;
    }
    let name = r.string()?;
    let alt_names = exactly(r.count(4)?, || r.string())?;
    let country = CountryCode::parse("country", std::str::from_utf8(r.take(3)?).ok()?).ok()?;
    let kind = *SiteKind::ALL.get(usize::from(r.byte()?))?;
    let declaration = *Declaration::ALL.get(usize::from(r.byte()?))?;
    let status = *Status::ALL.get(usize::from(r.byte()?))?;
    let confidence = *Confidence::ALL.get(usize::from(r.byte()?))?;
    let position_quality = if format == FORMAT {
        *PositionQuality::ALL.get(usize::from(r.byte()?))?
    } else {
        PositionQuality::Unknown
    };
    let sources = exactly(r.count(6)?, || {
        Some(Source {
            title: r.string()?,
            url: r.optional()?,
            date: r.optional()?,
        })
    })?;
    let notes = r.optional()?;
    let multi = match r.byte()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let parts: Vec<Vec<Vec<[f64; 2]>>> = exactly(r.count(8)?, || {
        let n = r.count(4)?;
        exactly(n, || r.ring()).filter(|rings| !rings.is_empty())
    })?;
    if parts.is_empty() || (!multi && parts.len() != 1) || !r.0.is_empty() {
        return None;
    }
    Some(Site {
        id: SiteId::parse("id", id).ok()?,
        name,
        alt_names,
        country,
        kind,
        declaration,
        status,
        confidence,
        position_quality,
        footprint: Footprint::stored(parts, multi)?,
        sources,
        notes,
    })
}

/// `n` values read by `next`, or `None` at the first it cannot read. The vector
/// is sized once: collecting through `Option` would start it at four and grow
/// it, and a million sites hold several each.
fn exactly<T>(n: usize, mut next: impl FnMut() -> Option<T>) -> Option<Vec<T>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next()?);
    }
    Some(out)
}

/// Where `value` stands in its type's list of values.
fn place<T: PartialEq>(all: &[T], value: T) -> u8 {
    // Every value is in its own `ALL`, and each list is a handful long.
    all.iter().position(|v| *v == value).unwrap_or(0) as u8
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Texts are bounded well below 4 GiB by the parser, footprints by
    // `MAX_FOOTPRINT_VERTICES`.
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

/// The unread rest of a blob.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u32(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
    }

    /// A count of items that take at least `min_size` bytes each: one the rest
    /// of the blob cannot hold is refused before anything is allocated for it.
    fn count(&mut self, min_size: usize) -> Option<usize> {
        let n = self.u32()?;
        (n.checked_mul(min_size)? <= self.0.len()).then_some(n)
    }

    fn string(&mut self) -> Option<String> {
        let n = self.u32()?;
        Some(std::str::from_utf8(self.take(n)?).ok()?.to_owned())
    }

    fn optional(&mut self) -> Option<Option<String>> {
        match self.byte()? {
            0 => Some(None),
            1 => Some(Some(self.string()?)),
            _ => None,
        }
    }

    /// A closed ring of at least four in-range positions.
    fn ring(&mut self) -> Option<Vec<[f64; 2]>> {
        let n = self.count(16)?;
        if n < 4 {
            return None;
        }
        let bytes = self.take(n * 16)?;
        let ring: Vec<[f64; 2]> = bytes
            .chunks_exact(16)
            .map(|p| {
                let (lon, lat) = p.split_at(8);
                [
                    f64::from_le_bytes(lon.try_into().unwrap_or_default()),
                    f64::from_le_bytes(lat.try_into().unwrap_or_default()),
                ]
            })
            .collect();
        let in_range = ring
            .iter()
            .all(|[lon, lat]| (-180.0..=180.0).contains(lon) && (-90.0..=90.0).contains(lat));
        (in_range && ring.first() == ring.last()).then_some(ring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IdPolicy;
    use serde_json::json;

    fn site(feature: serde_json::Value) -> Site {
        Site::from_feature(&feature, IdPolicy::Required).unwrap()
    }

    /// A polygon with a hole, every optional field present, names in several scripts.
    fn full() -> Site {
        site(json!({"type": "Feature", "id": "yongbyon-1",
            "geometry": {"type": "Polygon", "coordinates": [
                [[125.0, 39.0], [125.2, 39.0], [125.2, 39.2], [125.0, 39.2], [125.0, 39.0]],
                [[125.05, 39.05], [125.05, 39.1], [125.1, 39.1], [125.1, 39.05], [125.05, 39.05]]]},
            "properties": {"name": "영변 핵과학연구단지", "alt_names": ["Yŏngbyŏn", "寧邊", ""],
                "country": "PRK", "kind": "reactor", "declaration": "undeclared",
                "status": "inactive", "confidence": "high", "position_quality": "verified",
                "sources": [{"title": "IAEA 🛰", "url": "https://example.org/a", "date": "2020-01-02"},
                            {"title": "untitled"}],
                "notes": "a note with \"quotes\" and a\nnewline"}}))
    }

    /// A multipolygon with a hole in one part and no optional field.
    fn multi() -> Site {
        site(json!({"type": "Feature", "id": "m",
            "geometry": {"type": "MultiPolygon", "coordinates": [
                [[[10.0, 10.0], [10.1, 10.0], [10.1, 10.1], [10.0, 10.0]]],
                [[[11.0, 11.0], [11.3, 11.0], [11.3, 11.3], [11.0, 11.3], [11.0, 11.0]],
                 [[11.1, 11.1], [11.1, 11.2], [11.2, 11.2], [11.1, 11.1]]]]},
            "properties": {"name": "m", "country": "ZZZ", "kind": "other"}}))
    }

    #[test]
    fn every_field_of_a_site_reads_back_equal() {
        let mut all = vec![full(), multi()];
        all.extend(crate::synth::sites(200, 9));
        all.extend(
            crate::import::parse_sites(
                include_str!("../../data/sites.geojson"),
                IdPolicy::Required,
            )
            .unwrap(),
        );
        for s in &all {
            let back = decode(s.id.as_str(), &encode(s)).expect("decodes");
            assert_eq!(&back, s);
            assert_eq!(back.footprint.is_multi(), s.footprint.is_multi());
            assert_eq!(
                back.footprint.shape().radius(),
                s.footprint.shape().radius()
            );
            assert_eq!(back.footprint.lonlat_bounds(), s.footprint.lonlat_bounds());
        }
    }

    #[test]
    fn a_blob_written_before_position_quality_reads_as_unknown_quality() {
        let s = multi();
        let mut blob = encode(&s);
        // Format byte, the name "m", no alternative names, the country, then
        // kind, declaration, status and confidence: the quality is next.
        let at = 1 + (4 + 1) + 4 + 3 + 4;
        assert_eq!(
            blob.remove(at),
            place(PositionQuality::ALL, PositionQuality::Unknown)
        );
        blob[0] = FORMAT_BEFORE_POSITION_QUALITY;
        assert_eq!(decode("m", &blob), Some(s));
        blob[0] = FORMAT + 1;
        assert_eq!(decode("m", &blob), None);
    }

    #[test]
    fn every_shortened_blob_is_refused_without_panicking() {
        for s in [full(), multi()] {
            let blob = encode(&s);
            for n in 0..blob.len() {
                assert!(decode(s.id.as_str(), &blob[..n]).is_none(), "{n} bytes");
            }
        }
    }

    #[test]
    fn a_blob_with_any_byte_changed_never_panics_and_trailing_bytes_are_refused() {
        let s = full();
        let blob = encode(&s);
        for i in 0..blob.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut bad = blob.clone();
                bad[i] = v;
                // Either refused, or a site that `check` can compare.
                let _ = decode(s.id.as_str(), &bad);
            }
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(decode(s.id.as_str(), &longer).is_none());
        let mut other_format = blob;
        other_format[0] = FORMAT + 1;
        assert!(decode(s.id.as_str(), &other_format).is_none());
    }

    #[test]
    fn a_huge_count_is_refused_before_it_is_allocated() {
        let mut blob = vec![FORMAT];
        blob.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode("x", &blob).is_none());
    }
}
