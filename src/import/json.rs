//! Lenient reading of PowerShell's `ConvertTo-Json` output: property names in any case,
//! values wrapped as `{"value": …}`, booleans and enums as strings or numbers, multi-valued
//! properties as arrays, single strings or PowerShell's `{a, b}` rendering of a list.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How deep wrapped values are followed; real exports nest two or three levels.
const MAX_DEPTH: usize = 8;

/// A property looked up as PowerShell does, ignoring case. `null` counts as absent.
pub fn property<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let found = obj.get(name).or_else(|| {
        obj.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })?;
    let value = unwrap(found);
    (!value.is_null()).then_some(value)
}

/// Windows PowerShell writes an array that carries note properties as
/// `{"value": [...], "Count": n}`, and a date as `{"value": …, "DateTime": …}`: the `value`
/// is the value.
pub fn unwrap(mut v: &Value) -> &Value {
    for _ in 0..MAX_DEPTH {
        let inner = v.as_object().and_then(|o| {
            o.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case("value"))
                .map(|(_, v)| v)
        });
        match inner {
            Some(inner) => v = inner,
            None => break,
        }
    }
    v
}

/// A JSON value shortened for a message.
pub fn show(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// `true`/`false`, `"True"`/`"False"` or `1`/`0`.
pub fn boolean(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => return Ok(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => return Ok(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => return Ok(false),
        Value::Number(n) if n.as_u64() == Some(1) => return Ok(true),
        Value::Number(n) if n.as_u64() == Some(0) => return Ok(false),
        _ => {}
    }
    Err(format!("{} is not true or false", show(v)))
}

/// An enum value: its name (lower-cased, spaces and punctuation dropped) or its number,
/// which is what Windows PowerShell 5.1 writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enum {
    Name(String),
    Number(i64),
}

pub fn enumeration(v: &Value) -> Result<Enum, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(Enum::Number)
            .ok_or_else(|| format!("{n} is not an enum value")),
        Value::String(s) => Ok(match s.trim().parse::<i64>() {
            Ok(n) => Enum::Number(n),
            Err(_) => Enum::Name(
                s.chars()
                    .filter(|c| c.is_alphanumeric())
                    .flat_map(char::to_lowercase)
                    .collect(),
            ),
        }),
        other => Err(format!("{} is not an enum value", show(other))),
    }
}

/// An enum for display: its name as written, or the name its number stands for in `names`.
pub fn enum_label(v: &Value, names: &[(i64, &str)]) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => {
            let n = n.as_i64()?;
            let name = names.iter().find(|(k, _)| *k == n).map(|(_, name)| *name);
            Some(name.map_or_else(|| n.to_string(), str::to_owned))
        }
        _ => None,
    }
}

/// A multi-valued property as a list of strings. An item that is an object gives the first
/// string found under `keys` (a serialised `SmartHost` or `SmtpDomainWithSubdomains`).
pub fn list(v: &Value, keys: &[&str]) -> Result<Vec<String>, String> {
    let items: Vec<&Value> = match unwrap(v) {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    let mut out = Vec::new();
    for item in items {
        let item = unwrap(item);
        if item.is_null() {
            continue;
        }
        let text = text(item, keys, 0)
            .ok_or_else(|| format!("{} is neither a name nor an address", show(item)))?;
        out.extend(split(&text));
    }
    Ok(out)
}

/// A single-valued property as text (a string, or an object holding one under `keys`).
pub fn single(v: &Value, keys: &[&str]) -> Result<String, String> {
    text(v, keys, 0).ok_or_else(|| format!("{} is not text", show(v)))
}

fn text(v: &Value, keys: &[&str], depth: usize) -> Option<String> {
    if depth > MAX_DEPTH {
        return None;
    }
    match unwrap(v) {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Object(obj) => keys
            .iter()
            .find_map(|key| property(obj, key).and_then(|v| text(v, keys, depth + 1)))
            .or_else(|| only_string(obj)),
        _ => None,
    }
}

/// The one non-empty string property of an object, if it has exactly one.
fn only_string(obj: &Map<String, Value>) -> Option<String> {
    let mut strings = obj
        .values()
        .filter_map(Value::as_str)
        .filter(|s| !s.trim().is_empty());
    match (strings.next(), strings.next()) {
        (Some(s), None) => Some(s.trim().to_owned()),
        _ => None,
    }
}

/// `"{a, b}"`, `"a, b"`, `"a; b"` or `"a b"` as its items. Host names and domains hold none
/// of these separators, so splitting cannot cut one in two.
fn split(text: &str) -> impl Iterator<Item = String> + '_ {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    inner
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A date for a comment: `/Date(ms)/` (Windows PowerShell 5.1) becomes RFC 3339; anything
/// else, with or without an offset, is kept as written. Never fails: the date only informs.
pub fn date(v: &Value) -> Option<String> {
    let text = unwrap(v).as_str()?.trim();
    if let Some(inner) = text
        .strip_prefix("/Date(")
        .and_then(|t| t.strip_suffix(")/"))
    {
        return epoch_millis(inner);
    }
    (!text.is_empty()).then(|| text.chars().take(40).collect())
}

/// `1710754887531` or `1710754887531+0100`: the milliseconds are UTC, the offset only says
/// where the date was displayed.
fn epoch_millis(inner: &str) -> Option<String> {
    let end = inner
        .char_indices()
        .skip(1)
        .find(|(_, c)| *c == '+' || *c == '-')
        .map_or(inner.len(), |(i, _)| i);
    let millis: i128 = inner[..end].parse().ok()?;
    let t = OffsetDateTime::from_unix_timestamp_nanos(millis.checked_mul(1_000_000)?).ok()?;
    t.format(&Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn properties_ignore_case_and_unwrap_values() {
        let v = json!({"smarthosts": {"value": ["a.contoso.com"], "Count": 1}, "Comment": null});
        let obj = v.as_object().unwrap();
        assert_eq!(property(obj, "SmartHosts"), Some(&json!(["a.contoso.com"])));
        assert_eq!(property(obj, "Comment"), None);
        assert_eq!(property(obj, "Missing"), None);
    }

    #[test]
    fn booleans_in_every_spelling() {
        for (v, want) in [
            (json!(true), true),
            (json!("False"), false),
            (json!(" TRUE "), true),
            (json!(1), true),
            (json!(0), false),
        ] {
            assert_eq!(boolean(&v), Ok(want), "{v}");
        }
        for bad in [json!("yes"), json!(2), json!([true]), json!({})] {
            assert!(boolean(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enums_as_names_or_numbers() {
        assert_eq!(
            enumeration(&json!("Domain Validation")),
            Ok(Enum::Name("domainvalidation".into()))
        );
        assert_eq!(enumeration(&json!(4)), Ok(Enum::Number(4)));
        assert_eq!(enumeration(&json!("4")), Ok(Enum::Number(4)));
        assert!(enumeration(&json!(1.5)).is_err());
        assert!(enumeration(&json!(true)).is_err());
        let names = [(1, "OnPremises"), (2, "Partner")];
        assert_eq!(enum_label(&json!(2), &names).as_deref(), Some("Partner"));
        assert_eq!(enum_label(&json!(7), &names).as_deref(), Some("7"));
        assert_eq!(
            enum_label(&json!("OnPremises"), &names).as_deref(),
            Some("OnPremises")
        );
    }

    #[test]
    fn multi_valued_properties_in_every_form() {
        let keys = ["Domain", "Address"];
        for v in [
            json!(["a.contoso.com", "192.0.2.1"]),
            json!("{a.contoso.com, 192.0.2.1}"),
            json!("a.contoso.com, 192.0.2.1"),
            json!("a.contoso.com 192.0.2.1"),
            json!(["{a.contoso.com, 192.0.2.1}"]),
            json!({"value": ["a.contoso.com", "192.0.2.1"], "Count": 2}),
            json!([
                {"Domain": {"HostnameString": "a.contoso.com"}, "IsIPAddress": false, "Address": null},
                {"Domain": null, "IsIPAddress": true, "Address": {"IPAddressToString": "192.0.2.1", "AddressFamily": 2}}
            ]),
        ] {
            assert_eq!(
                list(&v, &keys).unwrap(),
                ["a.contoso.com", "192.0.2.1"],
                "{v}"
            );
        }
        assert_eq!(list(&json!([]), &keys).unwrap(), Vec::<String>::new());
        assert_eq!(list(&json!("{}"), &keys).unwrap(), Vec::<String>::new());
        assert!(list(&json!([42]), &keys).is_err());
        assert!(list(&json!([{"Port": 25}]), &keys).is_err());
    }

    #[test]
    fn dates_with_and_without_offsets() {
        assert_eq!(
            date(&json!("/Date(1710754887000)/")).as_deref(),
            Some("2024-03-18T09:41:27Z")
        );
        assert_eq!(
            date(&json!("/Date(1710754887000+0100)/")).as_deref(),
            Some("2024-03-18T09:41:27Z")
        );
        assert_eq!(
            date(&json!({"value": "/Date(0)/", "DateTime": "Thursday, January 1, 1970"}))
                .as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        for kept in ["2024-03-18T10:41:27+01:00", "2024-03-18T10:41:27"] {
            assert_eq!(date(&json!(kept)).as_deref(), Some(kept));
        }
        assert_eq!(date(&json!("/Date(99999999999999999999999)/")), None);
        assert_eq!(date(&json!(17)), None);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut v = json!("a.contoso.com");
        for _ in 0..50 {
            v = json!({ "Domain": v });
        }
        assert!(list(&v, &["Domain"]).is_err());
        let mut w = json!("x");
        for _ in 0..50 {
            w = json!({ "value": w });
        }
        assert!(unwrap(&w).is_object());
    }
}
