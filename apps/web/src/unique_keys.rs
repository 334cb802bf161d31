//! Checks that a JSON text has no duplicate object key at any level.
//!
//! `serde_json::Value` keeps the last of two equal keys, and the services
//! behind the web app decode with serde as well, so `{"command": "ping",
//! "command": "set_heater"}` would pass a check of the first key and run the
//! second. A text/plain form can only produce such a body (`name=value`
//! pairs end in a `=` that must be hidden in a key), so refusing duplicates
//! also closes that door. The walk is serde's own: the deserializer's
//! recursion limit (128 levels) bounds it.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Walks any JSON value; fails on the first duplicate key.
struct Unique;

impl<'de> DeserializeSeed<'de> for Unique {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Unique)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key) {
                return Err(de::Error::custom("duplicate object key"));
            }
            map.next_value_seed(Unique)?;
        }
        Ok(())
    }
}

/// `Ok` when `text` is one JSON value without duplicate keys; the reason
/// otherwise (it never echoes the text).
pub fn check(text: &[u8]) -> Result<(), String> {
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    Unique
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end())
        .map_err(|e| {
            // Only the visitor above raises data errors in this walk.
            let what = if e.classify() == serde_json::error::Category::Data {
                "duplicate object key"
            } else {
                "not JSON"
            };
            format!("{what} at line {} column {}", e.line(), e.column())
        })
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn duplicates_are_refused_at_every_level() {
        assert!(check(br#"{"a": 1, "b": [{"c": 1, "d": {"e": 2}}]}"#).is_ok());
        assert!(
            check(br#"{"a": 1, "a": 2}"#)
                .unwrap_err()
                .contains("duplicate")
        );
        assert!(
            check(br#"{"x": [{"b": {"c": 1, "c": 1}}]}"#)
                .unwrap_err()
                .contains("duplicate")
        );
        // Escapes decode before the comparison.
        assert!(
            check(br#"{"a": 1, "\u0061": 2}"#)
                .unwrap_err()
                .contains("duplicate")
        );
        assert!(
            check(b"{\"a\": 1} trailing")
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(check(b"command=ping").unwrap_err().contains("not JSON"));
    }
}
