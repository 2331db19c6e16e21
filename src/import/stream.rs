//! Reads a FeatureCollection one feature at a time, so memory does not grow with
//! the size of the batch.

use crate::model::json::{Skip, UniqueKeys};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use std::fmt;
use std::io::Read;
use std::marker::PhantomData;

/// Why a stream could not be read as a FeatureCollection.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the body is not valid JSON: {0}")]
    Json(serde_json::Error),
    #[error("{0}")]
    NotACollection(String),
    /// The per-feature callback asked to stop.
    #[error("stopped: {0}")]
    Stopped(String),
}

/// Calls `each(index, feature)` for every element of the `features` array, in
/// order, holding one feature in memory at a time. A callback error stops the
/// stream and is returned as is.
pub fn for_each_feature<R, E>(
    reader: R,
    mut each: impl FnMut(usize, Value) -> Result<(), E>,
) -> Result<usize, Result<StreamError, E>>
where
    R: Read,
{
    stream(reader, |i, UniqueKeys(feature)| each(i, feature))
}

/// [`for_each_feature`] with each feature handed over as its text, checked
/// only to be JSON: turning the text into values is left to the caller, which
/// can then spread it over the cores instead of doing it on the reading thread.
pub fn for_each_raw_feature<R, E>(
    reader: R,
    each: impl FnMut(usize, Box<RawValue>) -> Result<(), E>,
) -> Result<usize, Result<StreamError, E>>
where
    R: Read,
{
    stream(reader, each)
}

fn stream<R, T, E>(
    reader: R,
    mut each: impl FnMut(usize, T) -> Result<(), E>,
) -> Result<usize, Result<StreamError, E>>
where
    R: Read,
    T: for<'de> Deserialize<'de>,
{
    let mut failure: Option<E> = None;
    let mut de =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 16, reader));
    let visitor = CollectionVisitor {
        each: &mut each,
        failure: &mut failure,
        feature: PhantomData,
    };
    let result =
        de::Deserializer::deserialize_map(&mut de, visitor).and_then(|n| de.end().map(|_| n));
    match (result, failure) {
        (_, Some(e)) => Err(Err(e)),
        (Ok(Ok(n)), None) => Ok(n),
        (Ok(Err(msg)), None) => Err(Ok(StreamError::NotACollection(msg))),
        (Err(e), None) => Err(Ok(StreamError::Json(e))),
    }
}

struct CollectionVisitor<'a, F, T, E> {
    each: &'a mut F,
    failure: &'a mut Option<E>,
    feature: PhantomData<T>,
}

impl<'de, F, T, E> Visitor<'de> for CollectionVisitor<'_, F, T, E>
where
    F: FnMut(usize, T) -> Result<(), E>,
    T: for<'a> Deserialize<'a>,
{
    /// The number of features, or what is wrong with the collection's shape.
    type Value = Result<usize, String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a GeoJSON FeatureCollection object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kind: Option<String> = None;
        let mut count: Option<usize> = None;
        // A repeated member is reported once the object has been read to its
        // end; stopping at once would leave the parser mid-object.
        let mut repeated: Option<&'static str> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" if kind.is_none() => kind = Some(map.next_value()?),
                "features" if count.is_none() => {
                    count = Some(map.next_value_seed(FeaturesSeed {
                        each: &mut *self.each,
                        failure: &mut *self.failure,
                        feature: PhantomData,
                    })?);
                }
                "type" | "features" => {
                    repeated.get_or_insert(if key == "type" { "type" } else { "features" });
                    map.next_value::<Skip>()?;
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        if let Some(member) = repeated {
            return Ok(Err(format!("{member}: given more than once")));
        }
        match (kind.as_deref(), count) {
            (Some("FeatureCollection"), Some(n)) => Ok(Ok(n)),
            (Some("FeatureCollection"), None) => Ok(Err(
                "features: missing; expected an array of Features".into(),
            )),
            (other, _) => Ok(Err(format!(
                "type: expected \"FeatureCollection\", found {other:?}"
            ))),
        }
    }
}

struct FeaturesSeed<'a, F, T, E> {
    each: &'a mut F,
    failure: &'a mut Option<E>,
    feature: PhantomData<T>,
}

impl<'de, F, T, E> DeserializeSeed<'de> for FeaturesSeed<'_, F, T, E>
where
    F: FnMut(usize, T) -> Result<(), E>,
    T: for<'a> Deserialize<'a>,
{
    type Value = usize;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F, T, E> Visitor<'de> for FeaturesSeed<'_, F, T, E>
where
    F: FnMut(usize, T) -> Result<(), E>,
    T: for<'a> Deserialize<'a>,
{
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of Features")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0;
        while let Some(feature) = seq.next_element::<T>()? {
            if let Err(e) = (self.each)(n, feature) {
                *self.failure = Some(e);
                return Err(de::Error::custom("stopped by the importer"));
            }
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(json: &str) -> Result<Vec<(usize, Value)>, String> {
        let mut out = Vec::new();
        for_each_feature(json.as_bytes(), |i, f| {
            out.push((i, f));
            Ok::<(), String>(())
        })
        .map_err(|e| match e {
            Ok(s) => s.to_string(),
            Err(e) => e,
        })?;
        Ok(out)
    }

    #[test]
    fn features_arrive_in_order_whatever_the_key_order() {
        let got = collect(
            r#"{"features":[{"a":1},{"a":2}],"bbox":[0,0,1,1],"type":"FeatureCollection"}"#,
        )
        .unwrap();
        assert_eq!(got.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(got[1].1["a"], 2);
    }

    #[test]
    fn a_document_that_is_not_a_collection_is_refused() {
        assert!(
            collect(r#"{"type":"Feature","features":[]}"#)
                .unwrap_err()
                .contains("FeatureCollection")
        );
        assert!(
            collect(r#"{"type":"FeatureCollection"}"#)
                .unwrap_err()
                .contains("features")
        );
        assert!(collect(r#"[1,2]"#).is_err());
        assert!(collect(r#"{"type":"FeatureCollection","features":[]} trailing"#).is_err());
    }

    #[test]
    fn a_key_repeated_in_a_feature_or_the_collection_is_refused() {
        let e = collect(
            r#"{"type":"FeatureCollection","features":[{"type":"Feature","id":1,"id":2}]}"#,
        )
        .unwrap_err();
        assert!(e.contains(r#"duplicate key "id""#), "{e}");
        let e =
            collect(r#"{"type":"FeatureCollection","type":"Feature","features":[]}"#).unwrap_err();
        assert!(e.contains("type: given more than once"), "{e}");
        let e =
            collect(r#"{"type":"FeatureCollection","features":[],"features":[{}]}"#).unwrap_err();
        assert!(e.contains("features: given more than once"), "{e}");
    }

    #[test]
    fn a_callback_error_stops_the_stream() {
        let mut seen = 0;
        let r = for_each_feature(
            r#"{"type":"FeatureCollection","features":[1,2,3]}"#.as_bytes(),
            |i, _| {
                seen += 1;
                if i == 1 { Err("enough") } else { Ok(()) }
            },
        );
        assert!(matches!(r, Err(Err("enough"))));
        assert_eq!(seen, 2);
    }
}
