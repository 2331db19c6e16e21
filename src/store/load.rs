//! Reading stored sites back quickly: rows were checked when they were written,
//! so loading reads each straight into a [`Site`] without repeating the ring
//! validity test (`sitewatch check` repeats it), and spreads the parsing over
//! the machine's cores. A row that does not have the stored shape takes the
//! full parser, which says what is wrong with it.

use super::StoreError;
use super::sites::parse_stored;
use crate::model::{
    Confidence, CountryCode, Declaration, Footprint, Site, SiteId, SiteKind, Source, Status,
};
use serde::Deserialize;
use std::sync::{Arc, Mutex, PoisonError, mpsc};

#[derive(Deserialize)]
struct StoredFeature {
    id: String,
    geometry: StoredGeometry,
    properties: StoredProps,
}

#[derive(Deserialize)]
#[serde(tag = "type", content = "coordinates")]
enum StoredGeometry {
    Polygon(Vec<Vec<[f64; 2]>>),
    MultiPolygon(Vec<Vec<Vec<[f64; 2]>>>),
}

#[derive(Deserialize)]
struct StoredProps {
    name: String,
    #[serde(default)]
    alt_names: Vec<String>,
    country: String,
    kind: String,
    declaration: String,
    status: String,
    confidence: String,
    #[serde(default)]
    sources: Vec<StoredSource>,
    notes: Option<String>,
}

#[derive(Deserialize)]
struct StoredSource {
    title: String,
    url: Option<String>,
    date: Option<String>,
}

fn fast(id: &str, text: &str) -> Option<Site> {
    let f: StoredFeature = serde_json::from_str(text).ok()?;
    if f.id != id {
        return None;
    }
    let p = f.properties;
    let (parts, multi) = match f.geometry {
        StoredGeometry::Polygon(rings) => (vec![rings], false),
        StoredGeometry::MultiPolygon(parts) => (parts, true),
    };
    Some(Site {
        id: SiteId::parse("id", &f.id).ok()?,
        name: p.name,
        alt_names: p.alt_names,
        country: CountryCode::parse("country", &p.country).ok()?,
        kind: SiteKind::parse("kind", &p.kind).ok()?,
        declaration: Declaration::parse("declaration", &p.declaration).ok()?,
        status: Status::parse("status", &p.status).ok()?,
        confidence: Confidence::parse("confidence", &p.confidence).ok()?,
        footprint: Footprint::stored(parts, multi)?,
        sources: p
            .sources
            .into_iter()
            .map(|s| Source {
                title: s.title,
                url: s.url,
                date: s.date,
            })
            .collect(),
        notes: p.notes,
    })
}

/// A stored site row read back as a [`Site`].
pub(super) fn parse_trusted(id: &str, text: &str) -> Result<Site, StoreError> {
    match fast(id, text) {
        Some(site) => Ok(site),
        None => parse_stored(id, text),
    }
}

/// Rows handed to the parsing threads at a time: large enough that the channel
/// is not the cost, small enough that the text in flight stays a few megabytes.
const CHUNK: usize = 4_096;

/// One chunk's parsed sites, tagged with the chunk's place in the row order.
type Parsed = (usize, Result<Vec<Arc<Site>>, StoreError>);

/// Parses `(id, feature)` rows on every core while the caller's thread reads
/// them, and returns the sites in row order. Each site is allocated once, where
/// the index will hold it, so a million sites never exist twice.
pub(super) fn parse_rows(
    rows: impl Iterator<Item = Result<(String, String), StoreError>>,
) -> Result<Vec<Arc<Site>>, StoreError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (to_workers, inbox) = mpsc::sync_channel::<(usize, Vec<(String, String)>)>(workers * 2);
    let inbox = Mutex::new(inbox);
    let (to_main, results) = mpsc::channel::<Parsed>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let to_main = to_main.clone();
            let inbox = &inbox;
            scope.spawn(move || {
                loop {
                    let next = inbox.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok((seq, chunk)) = next else { break };
                    let parsed = chunk
                        .iter()
                        .map(|(id, text)| parse_trusted(id, text).map(Arc::new))
                        .collect();
                    if to_main.send((seq, parsed)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(to_main);
        let mut read_error = None;
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut seq = 0;
        for row in rows {
            match row {
                Ok(r) => chunk.push(r),
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            }
            if chunk.len() == CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                if to_workers.send((seq, full)).is_err() {
                    break;
                }
                seq += 1;
            }
        }
        if !chunk.is_empty() {
            let _ = to_workers.send((seq, chunk));
        }
        drop(to_workers);
        let mut done: Vec<Parsed> = results.iter().collect();
        if let Some(e) = read_error {
            return Err(e);
        }
        done.sort_by_key(|(seq, _)| *seq);
        let mut sites = Vec::new();
        for (_, part) in done {
            sites.extend(part?);
        }
        Ok(sites)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::parse_sites;
    use crate::model::IdPolicy;

    fn rows(sites: &[Site]) -> Vec<Result<(String, String), StoreError>> {
        sites
            .iter()
            .map(|s| Ok((s.id.to_string(), s.to_feature().to_string())))
            .collect()
    }

    #[test]
    fn a_stored_site_reads_back_equal_to_the_one_written() {
        let mut all = crate::synth::sites(300, 12);
        let seed = include_str!("../../data/sites.geojson");
        all.extend(parse_sites(seed, IdPolicy::Required).unwrap());
        for site in &all {
            let text = site.to_feature().to_string();
            let fast = fast(site.id.as_str(), &text).expect("the stored shape");
            assert_eq!(&fast, site);
            assert_eq!(
                fast.footprint.shape().radius(),
                site.footprint.shape().radius()
            );
        }
    }

    #[test]
    fn rows_come_back_in_order_across_many_chunks() {
        let sites = crate::synth::sites(CHUNK * 2 + 17, 3);
        let back = parse_rows(rows(&sites).into_iter()).unwrap();
        assert!(back.iter().map(|s| &**s).eq(sites.iter()));
    }

    #[test]
    fn a_row_that_is_not_a_valid_site_is_reported_by_id() {
        let sites = crate::synth::sites(10, 5);
        let mut r = rows(&sites);
        r[4] = Ok((
            "syn-0000005".into(),
            r#"{"type":"Feature","id":"syn-0000005"}"#.into(),
        ));
        let err = parse_rows(r.into_iter()).unwrap_err();
        assert!(err.to_string().contains("syn-0000005"), "{err}");
    }

    #[test]
    fn a_row_whose_id_differs_from_its_key_takes_the_full_parser() {
        let site = &crate::synth::sites(1, 5)[0];
        assert!(fast("other", &site.to_feature().to_string()).is_none());
    }
}
