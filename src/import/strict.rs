//! JSON read into a [`Value`] that refuses duplicate keys. serde_json keeps the last of two
//! equal keys silently, so `{"Enabled": false, …, "Enabled": true}` would import a connector
//! its export disables. PowerShell never writes a key twice, in any case; a file that does
//! was edited or forged, and which value was meant cannot be known.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `text`; a key that repeats in one object (ignoring case, as property lookup does)
/// is an error naming the key, its line and its column.
pub fn parse(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<Strict>(text).map(|s| s.0)
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Strict(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut object = Map::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if let Some(first) = seen.insert(key.to_lowercase(), key.clone()) {
                let message = if first == key {
                    format!("duplicate key {key:?}")
                } else {
                    format!("duplicate key {key:?} (also written {first:?}; names ignore case)")
                };
                return Err(de::Error::custom(message));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Strict(Value::Object(object)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_serde_json_reads_them() {
        let text = r#"[{"a": 1, "b": -2, "c": 1.5, "d": "x", "e": null, "f": [true, {}]}]"#;
        assert_eq!(
            parse(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn a_repeated_key_is_an_error_with_its_place() {
        let e = parse("[{\"Name\": \"a\",\n  \"Enabled\": true,\n  \"Name\": \"b\"}]").unwrap_err();
        assert_eq!(e.line(), 3, "{e}");
        assert!(e.to_string().contains("duplicate key \"Name\""), "{e}");
        let e = parse(r#"{"SmartHosts": [{"x": 1, "X": 2}]}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("duplicate key \"X\" (also written \"x\""),
            "{e}"
        );
        assert!(
            parse(r#"[{"Name": 1}, {"Name": 2}]"#).is_ok(),
            "one per object"
        );
    }
}
