//! Request bodies, form or JSON, into a handler's struct by one rule. Strict: a form whose
//! percent-escapes decode to bytes that are not UTF-8 is refused, never patched with U+FFFD (two
//! different passwords would become one). And told in our own words: a message may name a
//! field, never repeat what the client sent in it (a password in the wrong field, say).

use std::borrow::Cow;
use std::fmt;

use percent_encoding::percent_decode_str;
use serde::de::value::{MapDeserializer, SeqDeserializer, StrDeserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::Value;

use crate::error::ApiError;

/// `body` as a `T`: a form when `is_form`, JSON otherwise. A form's fields reach `T` as JSON
/// strings, so both encodings go through one deserializer and get the same messages. Every
/// request field is text (`String` or `Option<String>`); a number, boolean or enum field would
/// need this decoder taught to read one from a form's text (it would be refused as it is).
pub fn decode<T: DeserializeOwned>(body: &str, is_form: bool) -> Result<T, ApiError> {
    let fields = if is_form {
        form_fields(body)?
    } else {
        json_fields(body)?
    };
    T::deserialize(Fields {
        entries: fields.into_iter(),
        value: None,
    })
    .map_err(|e| ApiError::invalid_request(e.to_string()))
}

/// `application/x-www-form-urlencoded` as the URL Standard parses it (`+` is a space, a `%`
/// that starts no escape stays), except that escapes of bytes that are not UTF-8 are refused.
fn form_fields(body: &str) -> Result<Vec<(String, Value)>, ApiError> {
    let text = |raw: &str| {
        percent_decode_str(&raw.replace('+', " "))
            .decode_utf8()
            .map(Cow::into_owned)
            .map_err(|_| ApiError::invalid_request("the form body is not UTF-8 once decoded"))
    };
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((text(name)?, Value::String(text(value)?)))
        })
        .collect()
}

fn json_fields(body: &str) -> Result<Vec<(String, Value)>, ApiError> {
    match serde_json::from_str::<Members>(body) {
        Ok(Members(members)) => Ok(members),
        // serde_json's messages may quote the body: only its category is passed on.
        Err(e) if e.is_data() => Err(ApiError::invalid_request("the JSON body must be an object")),
        Err(_) => Err(ApiError::invalid_request("invalid JSON body")),
    }
}

/// A JSON object's members in order, repeats included: a map would keep only the last value,
/// and `T` must see a repeated field to refuse it.
struct Members(Vec<(String, Value)>);

impl<'de> de::Deserialize<'de> for Members {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object;
        impl<'de> Visitor<'de> for Object {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Object)
    }
}

/// The body's fields, handed to `T` one at a time so that a value's error names its field.
/// Only a field `T` knows can fail (it ignores the others), so the name is never arbitrary
/// client input.
struct Fields {
    entries: std::vec::IntoIter<(String, Value)>,
    value: Option<(String, Value)>,
}

impl<'de> de::Deserializer<'de> for Fields {
    type Error = BodyError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BodyError> {
        visitor.visit_map(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl<'de> MapAccess<'de> for Fields {
    type Error = BodyError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, BodyError> {
        let Some((name, value)) = self.entries.next() else {
            return Ok(None);
        };
        let key = seed.deserialize(StrDeserializer::<BodyError>::new(&name))?;
        self.value = Some((name, value));
        Ok(Some(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, BodyError> {
        let (name, value) = self.value.take().ok_or(BodyError::Other)?;
        seed.deserialize(Json(value)).map_err(|e| BodyError::Field {
            name,
            expected: match e {
                BodyError::Expected(expected) => Some(expected),
                _ => None,
            },
        })
    }
}

/// One JSON value, deserialized with [`BodyError`]: a wrong one is told by what was expected
/// (the receiving type's words), never by what came.
struct Json(Value);

impl IntoDeserializer<'_, BodyError> for Json {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for Json {
    type Error = BodyError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BodyError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => visitor.visit_u64(u),
                (None, Some(i)) => visitor.visit_i64(i),
                (None, None) => visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => {
                SeqDeserializer::new(items.into_iter().map(Json)).deserialize_any(visitor)
            }
            Value::Object(members) => {
                MapDeserializer::new(members.into_iter().map(|(k, v)| (k, Json(v))))
                    .deserialize_any(visitor)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BodyError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

/// Why a body does not fit its request. It holds field names (`T`'s own) and what `T` expected,
/// never a value the client sent: serde's `Unexpected` and `custom` messages may quote one.
#[derive(Debug)]
enum BodyError {
    Missing(&'static str),
    Repeated(&'static str),
    /// A value of the wrong kind, before its field is known.
    Expected(String),
    Field {
        name: String,
        expected: Option<String>,
    },
    Other,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(name) => write!(f, "missing field `{name}`"),
            Self::Repeated(name) => write!(f, "field `{name}` is given more than once"),
            Self::Expected(expected) => write!(f, "the body must be {expected}"),
            Self::Field {
                name,
                expected: Some(expected),
            } => write!(f, "field `{name}` must be {expected}"),
            Self::Field {
                name,
                expected: None,
            } => write!(f, "field `{name}` is invalid"),
            Self::Other => f.write_str("the body does not fit this request"),
        }
    }
}

impl std::error::Error for BodyError {}

impl de::Error for BodyError {
    fn custom<M: fmt::Display>(_message: M) -> Self {
        Self::Other
    }
    fn invalid_type(_: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::Expected(expected.to_string())
    }
    fn invalid_value(_: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::Expected(expected.to_string())
    }
    fn invalid_length(_: usize, expected: &dyn de::Expected) -> Self {
        Self::Expected(expected.to_string())
    }
    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        Self::Expected(format!("one of {}", expected.join(", ")))
    }
    fn unknown_field(_: &str, _: &'static [&'static str]) -> Self {
        Self::Other
    }
    fn missing_field(name: &'static str) -> Self {
        Self::Missing(name)
    }
    fn duplicate_field(name: &'static str) -> Self {
        Self::Repeated(name)
    }
}
