//! Reading batches of GeoJSON into domain values: the whole batch is checked
//! before anything is stored, and every bad feature is reported by its index.

mod cluster;
mod matching;
mod observations;
mod stream;

pub use matching::match_place;
pub use observations::{
    ImportMode, ImportOptions, ImportOutcome, ImportReport, RunError, run_import,
};
pub use stream::{StreamError, for_each_feature, for_each_raw_feature};

use crate::model::{FieldError, IdPolicy, Site};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::HashSet;
use std::io::Read;

/// One rejected feature: where it is in the batch, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeatureProblem {
    pub index: usize,
    pub field: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    NotACollection(String),
    #[error("{} feature(s) are invalid; nothing was stored (first: feature {}: {}: {})",
        .0.len(), .0[0].index, .0[0].field, .0[0].reason)]
    Invalid(Vec<FeatureProblem>),
}

/// The `features` array of a FeatureCollection.
fn features(doc: &Value) -> Result<&Vec<Value>, ImportError> {
    if doc.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
        return Err(ImportError::NotACollection(
            "type: expected \"FeatureCollection\"".into(),
        ));
    }
    doc.get("features")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ImportError::NotACollection("features: expected an array of Features".into())
        })
}

/// `Site::from_feature` over every feature, spread over the machine's cores
/// (a catalogue file may hold a million sites), results in feature order.
fn parse_each(features: &[Value], ids: IdPolicy) -> Vec<Result<Site, FieldError>> {
    parse_each_with(features, |f| Site::from_feature(f, ids))
}

/// [`parse_each`] over features still in their text, which each thread reads
/// into values itself: that reading is most of the work of a large import.
fn parse_each_raw(features: &[Box<RawValue>], ids: IdPolicy) -> Vec<Result<Site, FieldError>> {
    parse_each_with(features, |raw| {
        // The text was read as JSON already, so only a repeated key is left
        // to refuse here.
        let feature = crate::model::json::from_str(raw.get())
            .map_err(|e| FieldError::new("feature", e.to_string()))?;
        Site::from_feature(&feature, ids)
    })
}

fn parse_each_with<T: Sync>(
    features: &[T],
    parse: impl Fn(&T) -> Result<Site, FieldError> + Sync,
) -> Vec<Result<Site, FieldError>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    if workers < 2 || features.len() < 1_024 {
        return features.iter().map(&parse).collect();
    }
    let parse = &parse;
    let chunk = features.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let parts: Vec<_> = features
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(parse).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| {
                // A panic in a parser thread is a bug; it is raised here as it
                // would have been without the threads.
                h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
            })
            .collect()
    })
}

/// Parses a FeatureCollection of sites. Fails, listing every bad feature, if any
/// feature is invalid or repeats an id seen earlier in the batch.
pub fn parse_sites(json: &str, ids: IdPolicy) -> Result<Vec<Site>, ImportError> {
    let doc: Value = crate::model::json::from_str(json)?;
    collect_sites(parse_each(features(&doc)?, ids))
}

/// Features parsed at a time by [`read_sites`]: enough to share among the
/// cores, few enough that memory holds sites rather than JSON trees.
const CHUNK: usize = 4_096;

/// [`parse_sites`] from a reader, one feature at a time: a catalogue file of a
/// million sites is never held whole, only the sites it becomes.
pub fn read_sites<R: Read>(reader: R, ids: IdPolicy) -> Result<Vec<Site>, ImportError> {
    let mut sites = Vec::new();
    stream_sites(reader, ids, |chunk| {
        sites.extend(chunk);
        true
    })?;
    Ok(sites)
}

/// [`read_sites`] that hands the sites on in chunks, in file order, while it
/// reads on: `take` gets each chunk as long as every feature so far was
/// valid, and returns `false` to stop the reading early. After the first bad
/// feature no more chunks are handed on, but the reading goes on to the end
/// so that the error lists every bad feature; the caller must then discard
/// what it was handed.
pub fn stream_sites<R: Read>(
    reader: R,
    ids: IdPolicy,
    mut take: impl FnMut(Vec<Site>) -> bool,
) -> Result<(), ImportError> {
    let mut pending: Vec<Box<RawValue>> = Vec::with_capacity(CHUNK);
    let mut checked = Checked::default();
    // The taker has stopped: nothing more is wanted.
    struct Stopped;
    let mut pass = |pending: &mut Vec<Box<RawValue>>| -> Result<(), Stopped> {
        let sites = checked.add(parse_each_raw(pending, ids));
        pending.clear();
        if checked.problems.is_empty() && !take(sites) {
            return Err(Stopped);
        }
        Ok(())
    };
    let streamed = for_each_raw_feature(reader, |_, f| {
        pending.push(f);
        if pending.len() == CHUNK {
            pass(&mut pending)?;
        }
        Ok(())
    });
    match streamed {
        Ok(_) => {}
        Err(Ok(StreamError::Json(e))) => return Err(ImportError::Json(e)),
        Err(Ok(other)) => return Err(ImportError::NotACollection(other.to_string())),
        Err(Err(Stopped)) => return Ok(()),
    }
    if pass(&mut pending).is_err() {
        return Ok(());
    }
    checked.finish()
}

/// Parsed features checked in feature order: the good sites, and every bad
/// feature (and every id seen earlier in the batch).
#[derive(Default)]
struct Checked {
    seen: HashSet<crate::model::SiteId>,
    problems: Vec<FeatureProblem>,
    next: usize,
}

impl Checked {
    /// Takes the next features' results; returns their good sites.
    fn add(&mut self, parsed: Vec<Result<Site, FieldError>>) -> Vec<Site> {
        let mut sites = Vec::with_capacity(parsed.len());
        for parsed in parsed {
            let index = self.next;
            self.next += 1;
            match parsed {
                Ok(site) if !self.seen.insert(site.id.clone()) => {
                    self.problems.push(FeatureProblem {
                        index,
                        field: "id".into(),
                        reason: format!("{} appears more than once in the batch", site.id),
                    })
                }
                Ok(site) => sites.push(site),
                Err(FieldError { field, reason }) => self.problems.push(FeatureProblem {
                    index,
                    field,
                    reason,
                }),
            }
        }
        sites
    }

    fn finish(self) -> Result<(), ImportError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ImportError::Invalid(self.problems))
        }
    }
}

/// The sites, or every bad feature (and every id seen earlier in the batch).
fn collect_sites(parsed: Vec<Result<Site, FieldError>>) -> Result<Vec<Site>, ImportError> {
    let mut checked = Checked::default();
    let sites = checked.add(parsed);
    checked.finish().map(|()| sites)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature(id: &str, kind: &str) -> String {
        format!(
            r#"{{"type":"Feature","id":"{id}","geometry":{{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}},"properties":{{"name":"n","country":"ZZZ","kind":"{kind}"}}}}"#
        )
    }

    #[test]
    fn reading_sites_from_a_stream_gives_what_parsing_the_text_gives() {
        let good = crate::synth::feature_collection(CHUNK + 300, 6).to_string();
        assert_eq!(
            read_sites(good.as_bytes(), IdPolicy::Required).unwrap(),
            parse_sites(&good, IdPolicy::Required).unwrap()
        );
        let bad = format!(
            r#"{{"type":"FeatureCollection","features":[{},{},{}]}}"#,
            feature("a", "reactor"),
            feature("b", "volcano"),
            feature("a", "reactor")
        );
        let Err(ImportError::Invalid(p)) = read_sites(bad.as_bytes(), IdPolicy::Required) else {
            panic!("accepted")
        };
        assert_eq!((p[0].index, p[0].field.as_str()), (1, "properties.kind"));
        assert_eq!((p[1].index, p[1].field.as_str()), (2, "id"));
        assert!(matches!(
            read_sites(&b"{\"type\":\"Feature\"}"[..], IdPolicy::Required),
            Err(ImportError::NotACollection(_))
        ));
    }

    #[test]
    fn streamed_sites_are_handed_on_in_order_until_the_first_bad_feature_yet_every_bad_one_is_reported()
     {
        let n = 3 * CHUNK;
        let mut doc = crate::synth::feature_collection(n, 7);
        let features = doc["features"].as_array_mut().unwrap();
        let ids: Vec<String> = features
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect();
        // Bad in the second chunk and in the third: the first chunk is
        // handed on, nothing after it.
        features[CHUNK + 5]["properties"]["kind"] = "volcano".into();
        features[2 * CHUNK + 9] = features[0].clone();
        let mut handed = Vec::new();
        let read = stream_sites(doc.to_string().as_bytes(), IdPolicy::Required, |chunk| {
            handed.extend(chunk.into_iter().map(|s| s.id.as_str().to_owned()));
            true
        });
        assert_eq!(handed, ids[..CHUNK]);
        let Err(ImportError::Invalid(p)) = read else {
            panic!("accepted")
        };
        let at: Vec<_> = p.iter().map(|p| (p.index, p.field.as_str())).collect();
        assert_eq!(at, [(CHUNK + 5, "properties.kind"), (2 * CHUNK + 9, "id")]);
    }

    #[test]
    fn a_taker_that_stops_stops_the_reading_at_once() {
        let doc = crate::synth::feature_collection(3 * CHUNK, 8).to_string();
        let mut chunks = 0;
        let read = stream_sites(doc.as_bytes(), IdPolicy::Required, |_| {
            chunks += 1;
            false
        });
        assert!(read.is_ok());
        assert_eq!(chunks, 1);
    }

    #[test]
    fn a_key_repeated_inside_one_streamed_feature_names_that_feature() {
        let twice = feature("b", "reactor").replacen(r#""id":"b""#, r#""id":"b","id":"c""#, 1);
        assert_ne!(twice, feature("b", "reactor"), "the fixture repeats the id");
        let body = format!(
            r#"{{"type":"FeatureCollection","features":[{},{twice}]}}"#,
            feature("a", "reactor")
        );
        let Err(ImportError::Invalid(p)) = read_sites(body.as_bytes(), IdPolicy::Required) else {
            panic!("accepted")
        };
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].index, p[0].field.as_str()), (1, "feature"));
        assert!(
            p[0].reason.contains(r#"duplicate key "id""#),
            "{}",
            p[0].reason
        );
    }

    #[test]
    fn every_bad_feature_is_reported_with_its_index_and_field() {
        let body = format!(
            r#"{{"type":"FeatureCollection","features":[{},{},{}]}}"#,
            feature("a", "reactor"),
            feature("b", "volcano"),
            feature("a", "reactor")
        );
        let Err(ImportError::Invalid(p)) = parse_sites(&body, IdPolicy::Required) else {
            panic!("accepted")
        };
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].index, p[0].field.as_str()), (1, "properties.kind"));
        assert_eq!((p[1].index, p[1].field.as_str()), (2, "id"));
    }

    #[test]
    fn a_feature_that_is_not_in_a_collection_is_refused() {
        assert!(matches!(
            parse_sites(&feature("a", "reactor"), IdPolicy::Required),
            Err(ImportError::NotACollection(_))
        ));
        assert!(matches!(
            parse_sites("{", IdPolicy::Required),
            Err(ImportError::Json(_))
        ));
    }
}
