//! Settings lists that take a TOML array or, since containers are configured through the
//! environment, a comma-separated string (`OTPD__TENANTS__ACME__API_KEY_SHA256=ab…,cd…`).

use serde::de::{self, value::StrDeserializer, Deserialize, Deserializer, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// `#[serde(deserialize_with = "crate::lists::array_or_commas")]` on a `Vec<T>` field.
pub fn array_or_commas<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_any(ListVisitor(PhantomData))
}

/// A list read by [`array_or_commas`], for places a field attribute cannot reach (map values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommaList<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for CommaList<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        array_or_commas(deserializer).map(CommaList)
    }
}

/// `#[serde(deserialize_with = "crate::lists::map_of_lists")]` on a `BTreeMap<K, Vec<T>>`.
pub fn map_of_lists<'de, D, K, T>(deserializer: D) -> Result<BTreeMap<K, Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord,
    T: Deserialize<'de>,
{
    let lists = BTreeMap::<K, CommaList<T>>::deserialize(deserializer)?;
    Ok(lists.into_iter().map(|(key, list)| (key, list.0)).collect())
}

struct ListVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list, or its items separated by commas")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(items)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<T>, E> {
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| T::deserialize(StrDeserializer::<E>::new(item)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Holder {
        #[serde(default, deserialize_with = "array_or_commas")]
        items: Vec<String>,
    }

    fn from_env(value: &str) -> Holder {
        std::env::set_var("OTPD_LISTS_TEST__ITEMS", value);
        let holder = config::Config::builder()
            .add_source(
                config::Environment::with_prefix("OTPD_LISTS_TEST")
                    .prefix_separator("__")
                    .separator("__"),
            )
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        std::env::remove_var("OTPD_LISTS_TEST__ITEMS");
        holder
    }

    #[test]
    fn takes_an_array_or_a_comma_separated_string() {
        let from_json: Holder = serde_json::from_str(r#"{"items": ["a", "b"]}"#).unwrap();
        assert_eq!(from_json.items, ["a", "b"]);
        assert_eq!(from_env("a, b,c").items, ["a", "b", "c"]);
        assert_eq!(from_env("single").items, ["single"]);
        let typed: Vec<crate::domain::Channel> =
            array_or_commas(StrDeserializer::<de::value::Error>::new("sms,email")).unwrap();
        assert_eq!(typed.len(), 2);
        assert!(array_or_commas::<_, crate::domain::Channel>(
            StrDeserializer::<de::value::Error>::new("sms,fax")
        )
        .is_err());
    }
}
