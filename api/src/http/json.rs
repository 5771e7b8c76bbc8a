//! JSON bodies: syntax errors are 400 `malformed_json`; a body of the wrong
//! shape is 422 naming the field, with a code from the kind of serde error
//! (`unknown_field`, `required`, `invalid_type`), never from its wording.
//!
//! serde_json's own deserializer fixes its error type, which keeps only a
//! message. So the body is read into a `serde_json::Value` first (syntax),
//! then deserialized from that value through [`ValueDe`], whose error type
//! records which `serde::de::Error` constructor the type's `Deserialize`
//! called; `serde_path_to_error` adds the path.

use std::fmt;

use serde::de::value::{MapDeserializer, SeqDeserializer, StrDeserializer};
use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde_json::Value;

use crate::error::{ApiError, FieldError};

/// Parse a JSON body into `T`, reporting the failing field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|_| {
        ApiError::bad_request("malformed_json", "The request body is not valid JSON.")
    })?;
    reject_control_chars_in(&value, "")?;
    serde_path_to_error::deserialize(ValueDe(&value)).map_err(|err| {
        let path = err.path().to_string();
        let shape = err.into_inner();
        let (field, code) = match &shape.kind {
            Kind::UnknownField(name) => (join(&path, name), "unknown_field"),
            Kind::MissingField(name) => (join(&path, name), "required"),
            Kind::Invalid => (join(&path, ""), "invalid_type"),
        };
        ApiError::validation(vec![FieldError::new(field, code, shape.message)])
    })
}

/// 422 for a control character in any string (or key) of the body, naming
/// its path (`first_name`, `items.0`): checked once here for every route.
fn reject_control_chars_in(value: &Value, path: &str) -> Result<(), ApiError> {
    let field = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::String(s) => {
            super::extract::reject_control_chars(if path.is_empty() { "body" } else { path }, s)
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| reject_control_chars_in(v, &field(&i.to_string()))),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            if k.chars().any(char::is_control) {
                super::extract::reject_control_chars(if path.is_empty() { "body" } else { path }, k)
            } else {
                reject_control_chars_in(v, &field(k))
            }
        }),
        _ => Ok(()),
    }
}

/// `path` (`.` for the root) with `name` appended unless it already ends
/// with it (an unknown key is already on the path).
fn join(path: &str, name: &str) -> String {
    let path = path.trim_start_matches('.');
    if name.is_empty() || path == name || path.ends_with(&format!(".{name}")) {
        path.to_owned()
    } else if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

#[derive(Debug)]
enum Kind {
    UnknownField(String),
    MissingField(&'static str),
    /// A wrong type or value, an unknown variant, or anything else.
    Invalid,
}

/// A shape error: which kind, and serde's description for the client.
#[derive(Debug)]
pub struct ShapeError {
    kind: Kind,
    message: String,
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ShapeError {}

impl de::Error for ShapeError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Self {
            kind: Kind::Invalid,
            message: msg.to_string(),
        }
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        Self {
            kind: Kind::UnknownField(field.to_owned()),
            message: format!("unknown field `{field}`"),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self {
            kind: Kind::MissingField(field),
            message: format!("missing field `{field}`"),
        }
    }
}

/// Deserializes a borrowed `serde_json::Value` with [`ShapeError`]s.
#[derive(Clone, Copy)]
struct ValueDe<'a>(&'a Value);

impl<'de> IntoDeserializer<'de, ShapeError> for ValueDe<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for ValueDe<'_> {
    type Error = ShapeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => visitor.visit_u64(u),
                (None, Some(i), _) => visitor.visit_i64(i),
                (None, None, Some(f)) => visitor.visit_f64(f),
                (None, None, None) => Err(de::Error::custom("unsupported number")),
            },
            Value::String(s) => visitor.visit_str(s),
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.iter().map(ValueDe));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Value::Object(map) => {
                let mut entries =
                    MapDeserializer::new(map.iter().map(|(k, v)| (k.as_str(), ValueDe(v))));
                let value = visitor.visit_map(&mut entries)?;
                entries.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ShapeError> {
        visitor.visit_newtype_struct(self)
    }

    /// Unit variants come as strings (`"admin"`); nothing else is an enum.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ShapeError> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(StrDeserializer::<ShapeError>::new(s)),
            other => Err(de::Error::invalid_type(unexpected(other), &"a string")),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct B {
            email: String,
        }
        let e = parse_json::<B>(br#"{"email":"a","role":"admin"}"#).expect_err("must fail");
        assert_eq!(e.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        let errs = e.errors.expect("errors");
        assert_eq!(errs[0].field, "role");
        assert_eq!(errs[0].code, "unknown_field");
        let e = parse_json::<B>(br#"{"#).expect_err("must fail");
        assert_eq!(e.code, "malformed_json");
        let e = parse_json::<B>(br#"{"email": 5}"#).expect_err("must fail");
        assert_eq!(e.errors.expect("errors")[0].field, "email");
    }

    #[test]
    fn codes_come_from_the_kind_of_error() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct B {
            name: String,
            role: Option<gatehouse_shared::domain::Role>,
        }
        let code = |body: &[u8]| {
            let e = parse_json::<B>(body).expect_err("must fail");
            let f = &e.errors.expect("errors")[0];
            (f.field.clone(), f.code.clone())
        };
        assert_eq!(code(br#"{}"#), ("name".into(), "required".into()));
        assert_eq!(
            code(br#"{"name":"a","role":"root"}"#),
            ("role".into(), "invalid_type".into())
        );
        assert_eq!(code(br#"[]"#), ("".into(), "invalid_type".into()));
        let ok = parse_json::<B>(br#"{"name":"a","role":null}"#).expect("parses");
        assert!(ok.role.is_none());
    }
}
