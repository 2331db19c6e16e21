//! Reading stored sites back quickly: rows were checked when they were written,
//! so loading reads each straight into a [`Site`] without repeating the ring
//! validity test (`sitewatch check` repeats it), and spreads the decoding over
//! the machine's cores. The live catalogue is read from its packed form, with
//! no text parsed; a row that does not have the stored shape takes the full
//! parser, which says what is wrong with it.

use super::StoreError;
use super::sites::parse_stored;
use crate::model::{
    Confidence, CountryCode, Declaration, Footprint, PositionQuality, Site, SiteId, SiteKind,
    Source, Status,
};
use rusqlite::Connection;
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
    /// Absent from sites written before it existed.
    position_quality: Option<String>,
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
        position_quality: match p.position_quality {
            None => PositionQuality::Unknown,
            Some(q) => PositionQuality::parse("position_quality", &q).ok()?,
        },
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

/// Parses `(id, feature)` rows on every core while the caller's thread reads
/// them, and returns the sites in row order. Each site is allocated once, where
/// the index will hold it, so a million sites never exist twice.
pub(super) fn parse_rows(
    rows: impl Iterator<Item = Result<(String, String), StoreError>>,
) -> Result<Vec<Arc<Site>>, StoreError> {
    let mut rows = rows.peekable();
    let chunks = std::iter::from_fn(|| {
        rows.peek()?;
        Some(rows.by_ref().take(CHUNK).collect::<Result<Vec<_>, _>>())
    });
    let parsed = in_parallel(chunks, |chunk: Vec<(String, String)>| {
        chunk
            .iter()
            .map(|(id, text)| parse_trusted(id, text).map(Arc::new))
            .collect()
    })?;
    Ok(parsed)
}

/// Runs `work` on each chunk on every core while the caller's thread produces
/// the chunks, and returns the results in chunk order. A chunk that cannot be
/// produced, or whose work fails, fails the whole.
fn in_parallel<T: Send, R: Send>(
    chunks: impl Iterator<Item = Result<T, StoreError>>,
    work: impl Fn(T) -> Result<Vec<R>, StoreError> + Sync,
) -> Result<Vec<R>, StoreError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (to_workers, inbox) = mpsc::sync_channel::<(usize, T)>(workers * 2);
    let inbox = Mutex::new(inbox);
    let (to_main, results) = mpsc::channel::<(usize, Result<Vec<R>, StoreError>)>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let to_main = to_main.clone();
            let (inbox, work) = (&inbox, &work);
            scope.spawn(move || {
                loop {
                    let next = inbox.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok((seq, chunk)) = next else { break };
                    if to_main.send((seq, work(chunk))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(to_main);
        let mut read_error = None;
        for (seq, chunk) in chunks.enumerate() {
            match chunk {
                Ok(chunk) => {
                    if to_workers.send((seq, chunk)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            }
        }
        drop(to_workers);
        let mut done: Vec<_> = results.iter().collect();
        if let Some(e) = read_error {
            return Err(e);
        }
        done.sort_by_key(|(seq, _)| *seq);
        let mut out = Vec::new();
        for (_, part) in done {
            out.extend(part?);
        }
        Ok(out)
    })
}

/// Packed rows as read, copied into one buffer per chunk so that reading a
/// row allocates nothing: each row is the end of its id and of its blob.
struct Packed {
    bytes: Vec<u8>,
    ends: Vec<(usize, usize)>,
}

impl Packed {
    fn rows(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(id_end, end)| {
            let row = (&self.bytes[start..id_end], &self.bytes[id_end..end]);
            start = end;
            row
        })
    }
}

/// What decoding one packed row gave: the site, or the id of a row whose blob
/// did not decode and is to be read from its GeoJSON.
type Slot = Result<Arc<Site>, String>;

/// Every live site from its packed form (see [`super::packed`]), in id order,
/// decoded on every core while this thread reads. A row whose blob does not
/// decode is read from its GeoJSON instead, with a warning; `sitewatch check`
/// reports it.
///
/// The pages are read, not mapped: an import lays each run of packed forms
/// out in file order, and reads of a run are read ahead by the kernel, where
/// faults on a mapping are not (measured at a million sites: 2.2-2.6 s from a
/// cold cache read, 3.7-3.9 s mapped, and 200 MB less resident).
pub(super) fn live_sites(conn: &Connection) -> Result<Vec<Arc<Site>>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT id, packed FROM sites WHERE packed IS NOT NULL ORDER BY id")?;
    let mut rows = stmt.query([])?;
    let mut finished = false;
    // Chunks come back here once decoded, so that their buffers are filled
    // again rather than each new one's memory being mapped and zeroed anew.
    let spare: Mutex<Vec<Packed>> = Mutex::new(Vec::new());
    let chunks = std::iter::from_fn(|| {
        if finished {
            return None;
        }
        let recycled = spare.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut chunk = recycled.unwrap_or_else(|| Packed {
            bytes: Vec::with_capacity(CHUNK * 256),
            ends: Vec::with_capacity(CHUNK),
        });
        while chunk.ends.len() < CHUNK {
            let row = match rows.next() {
                Ok(Some(row)) => row,
                Ok(None) => {
                    finished = true;
                    break;
                }
                Err(e) => {
                    finished = true;
                    return Some(Err(e.into()));
                }
            };
            let read = (|| -> rusqlite::Result<()> {
                chunk
                    .bytes
                    .extend_from_slice(row.get_ref(0)?.as_str()?.as_bytes());
                let id_end = chunk.bytes.len();
                chunk.bytes.extend_from_slice(row.get_ref(1)?.as_blob()?);
                chunk.ends.push((id_end, chunk.bytes.len()));
                Ok(())
            })();
            if let Err(e) = read {
                finished = true;
                return Some(Err(e.into()));
            }
        }
        (!chunk.ends.is_empty()).then_some(Ok(chunk))
    });
    let slots = in_parallel(chunks, |mut chunk: Packed| {
        let slots = chunk
            .rows()
            .map(|(id, blob)| {
                // The id was read as text, so it is UTF-8.
                let id = std::str::from_utf8(id).unwrap_or_default();
                super::packed::decode(id, blob)
                    .map(Arc::new)
                    .ok_or_else(|| id.to_owned())
            })
            .collect::<Vec<Slot>>();
        chunk.bytes.clear();
        chunk.ends.clear();
        spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(chunk);
        Ok(slots)
    })?;
    let mut feature = conn.prepare(concat!(
        "SELECT r.feature FROM ",
        super::current_feature_from!(),
        " WHERE s.id = ?1"
    ))?;
    slots
        .into_iter()
        .map(|slot| match slot {
            Ok(site) => Ok(site),
            Err(id) => {
                tracing::warn!(site = %id, "packed form unreadable; read from its GeoJSON");
                let text: String = feature.query_row([&id], |r| r.get(0))?;
                parse_stored(&id, &text).map(Arc::new)
            }
        })
        .collect()
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
        let seed = include_str!("../../../data/sites.geojson");
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
