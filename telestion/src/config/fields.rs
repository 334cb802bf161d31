//! The field names of a serde struct, found without a value: for `--help`,
//! which lists the keys a `TypedConfig<T>` reads.

use serde::de::{self, DeserializeOwned, Visitor};

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

/// A deserializer that records the fields a struct asks for, then stops.
struct Recorder<'a>(&'a mut Vec<&'static str>);

impl<'de> de::Deserializer<'de> for Recorder<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        self.0.extend_from_slice(fields);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The field names of `T` when it is a struct (empty otherwise).
pub(crate) fn field_names<T: DeserializeOwned>() -> Vec<&'static str> {
    let mut fields = Vec::new();
    let _ = T::deserialize(Recorder(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    #[test]
    fn struct_fields() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Settings {
            frequency: u64,
            data_subject: Option<String>,
        }
        assert_eq!(
            super::field_names::<Settings>(),
            ["frequency", "data_subject"]
        );
        assert!(super::field_names::<u32>().is_empty());
    }
}
