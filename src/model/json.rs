//! JSON read with the keys of every object unique. serde_json keeps the last of
//! a repeated key, so `{"id": "a", "id": "b"}` would silently become site `b`;
//! for a catalogue that analysts cite, such a body is ambiguous and is refused,
//! naming the key.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// A JSON value in which no object repeats a key. Deserializing it from
/// serde_json keeps serde_json's recursion limit.
#[derive(Debug, Clone, PartialEq)]
pub struct UniqueKeys(pub Value);

/// Parses `bytes` as one JSON document whose objects repeat no key.
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<UniqueKeys>(bytes).map(|v| v.0)
}

/// Parses `text` as [`from_slice`] does.
pub fn from_str(text: &str) -> Result<Value, serde_json::Error> {
    from_slice(text.as_bytes())
}

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeysVisitor).map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("number {v} is not finite")))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        UniqueKeys::deserialize(d).map(|v| v.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(UniqueKeys(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let UniqueKeys(v) = map.next_value()?;
            object.insert(key, v);
        }
        Ok(Value::Object(object))
    }
}

/// A JSON value read and dropped without being kept. Unlike serde's
/// `IgnoredAny`, which serde_json skips with no depth limit, it goes through
/// the parser's recursion limit, so a member that is skipped is held to the
/// same nesting bound as one that is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<de::IgnoredAny, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_document_without_repeated_keys_reads_as_serde_json_reads_it() {
        let text = r#"{"type":"Feature","id":"a","n":[1,-2,2.5,1e300,null,true,"x"],"p":{"q":{}}}"#;
        let ours = from_str(text).unwrap();
        let theirs: Value = serde_json::from_str(text).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours["n"][1], json!(-2));
    }

    #[test]
    fn a_repeated_key_is_refused_naming_the_key() {
        let e = from_str(r#"{"id":"a","properties":{},"id":"b"}"#).unwrap_err();
        assert!(e.to_string().contains(r#"duplicate key "id""#), "{e}");
        let e = from_str(r#"{"properties":{"name":"a","name":"b"}}"#).unwrap_err();
        assert!(e.to_string().contains(r#"duplicate key "name""#), "{e}");
    }

    #[test]
    fn the_same_key_in_different_objects_is_not_a_repeat() {
        assert!(from_str(r#"{"a":{"id":1},"b":{"id":2},"id":3}"#).is_ok());
    }

    #[test]
    fn deep_nesting_hits_the_recursion_limit_instead_of_the_stack() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let e = from_str(&deep).unwrap_err();
        assert!(e.to_string().contains("recursion limit"), "{e}");
    }

    #[test]
    fn a_skipped_value_is_held_to_the_nesting_limit_too() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let e = serde_json::from_str::<Skip>(&deep).unwrap_err();
        assert!(e.to_string().contains("recursion limit"), "{e}");
        let ignored = serde_json::from_str::<de::IgnoredAny>(&deep);
        assert!(ignored.is_ok(), "serde_json now limits IgnoredAny too");
        assert!(serde_json::from_str::<Skip>(r#"{"a":[1,{"b":null}],"c":"d"}"#).is_ok());
    }

    #[test]
    fn numbers_beyond_f64_and_non_json_tokens_are_refused() {
        assert!(from_str("[1e999]").is_err());
        assert!(from_str("[NaN]").is_err());
        assert!(from_str("[Infinity]").is_err());
    }
}
