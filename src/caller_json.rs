//! JSON a caller sent (an HTTP body, a broker message), read strictly and refused without
//! repeating it: a key given twice is an error, not decided by whichever comes last, and no
//! error names a value the caller sent — it may be a code (`{"code": 779017}`).

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Why a caller's JSON was refused, in words fit to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonRefusal {
    /// Not JSON at all, or an object that gives a key twice.
    Syntax(String),
    /// JSON, but not the fields expected: which field, and what it should be.
    Fields(String),
}

/// Parses `bytes` as one JSON value, refusing an object that gives a key twice.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonRefusal> {
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let tree = StrictValue
        .deserialize(&mut reader)
        .and_then(|tree| reader.end().map(|()| tree))
        .map_err(|error| JsonRefusal::Syntax(error.to_string()))?;
    Ok(tree)
}

/// Reads `tree` as `T`; a refusal names the field (`code`, `tags[2]`) and what it expects.
pub fn fields<T: DeserializeOwned>(tree: Value) -> Result<T, JsonRefusal> {
    serde_path_to_error::deserialize(tree).map_err(|error| {
        let path = error.path().to_string();
        let problem = without_values(&error.into_inner().to_string());
        JsonRefusal::Fields(if path == "." {
            problem
        } else {
            format!("'{path}' {problem}")
        })
    })
}

impl fmt::Display for JsonRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonRefusal::Syntax(reason) | JsonRefusal::Fields(reason) => f.write_str(reason),
        }
    }
}

/// serde's words for a data error without the value it met: "invalid type: integer
/// `779017`, expected a string" becomes "must be a string". Messages that name no caller's
/// value ("missing field `to`") stay as they are; any other is not repeated.
fn without_values(message: &str) -> String {
    const NAMING_A_VALUE: [&str; 4] = [
        "invalid type: ",
        "invalid value: ",
        "invalid length ",
        "unknown variant ",
    ];
    if message.starts_with("missing field `") {
        return message.to_owned();
    }
    if NAMING_A_VALUE.iter().any(|kind| message.starts_with(kind)) {
        if let Some((_, expected)) = message.split_once(", expected ") {
            let expected = if expected.starts_with("struct ") {
                "a JSON object"
            } else {
                expected
            };
            return format!("must be {expected}");
        }
    }
    "has a value of the wrong form".to_owned()
}

/// A `serde_json::Value` built as it is read, refusing duplicate keys.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let mut list = Vec::new();
        while let Some(item) = items.next_element_seed(StrictValue)? {
            list.push(item);
        }
        Ok(Value::Array(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = entries.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(
                    "an object gives the same key twice; send each field once",
                ));
            }
            let value = entries.next_value_seed(StrictValue)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Check {
        #[allow(dead_code)]
        code: String,
        #[allow(dead_code)]
        #[serde(default)]
        tags: Vec<u32>,
    }

    fn refusal<T: DeserializeOwned + fmt::Debug>(body: &str) -> String {
        parse(body.as_bytes())
            .and_then(fields::<T>)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_code_sent_as_a_number_is_refused_without_repeating_it() {
        let message = refusal::<Check>(r#"{"code": 779017}"#);
        assert_eq!(message, "'code' must be a string");
        let message = refusal::<Check>(r#"{"code": "1", "tags": [1, "779017"]}"#);
        assert_eq!(message, "'tags[1]' must be u32");
        let message = refusal::<Check>(r#"{"code": -779017.5}"#);
        assert!(!message.contains("779017"), "{message}");
    }

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth() {
        for body in [
            r#"{"code": "1", "code": "2"}"#,
            r#"{"code": "1", "tags": [{"a": 1, "a": 2}]}"#,
        ] {
            assert!(
                matches!(parse(body.as_bytes()), Err(JsonRefusal::Syntax(message)) if message.contains("same key twice"))
            );
        }
        assert!(parse(br#"{"code": "1", "nested": {"code": "2"}}"#).is_ok());
    }

    #[test]
    fn values_read_strictly_match_serde_json() {
        let body = r#"{"a": [1, -2, 3.5, true, null, "x"], "b": {"c": 18446744073709551615}}"#;
        let expected: Value = serde_json::from_str(body).unwrap();
        assert_eq!(parse(body.as_bytes()).unwrap(), expected);
        assert!(matches!(parse(b"{} trailing"), Err(JsonRefusal::Syntax(_))));
    }

    #[test]
    fn a_missing_field_is_named() {
        assert_eq!(refusal::<Check>("{}"), "missing field `code`");
        assert_eq!(refusal::<Check>(r#""779017""#), "must be a JSON object");
    }
}
