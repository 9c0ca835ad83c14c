//! The generic HTTP provider's body template, read once when the provider is built: each
//! string of the JSON split into its text and its placeholders, so a send writes the body
//! in one pass, without building a JSON tree or copying a string once per placeholder.

use serde_json::Value;

use crate::providers::OutboundMessage;

/// What a placeholder stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    To,
    Body,
    Channel,
    VerificationId,
    EntityId,
    TemplateId,
}

impl Field {
    /// Every placeholder, as a template writes it.
    pub const ALL: [(&'static str, Field); 6] = [
        ("{to}", Field::To),
        ("{body}", Field::Body),
        ("{channel}", Field::Channel),
        ("{verification_id}", Field::VerificationId),
        ("{entity_id}", Field::EntityId),
        ("{template_id}", Field::TemplateId),
    ];

    /// Its value for `message`; the registration's ids are empty where it has none.
    fn of(self, message: &OutboundMessage) -> &str {
        let registration = message.registration.as_ref();
        match self {
            Field::To => &message.to,
            Field::Body => &message.body,
            Field::Channel => message.channel.as_str(),
            Field::VerificationId => message.verification_id.as_str(),
            Field::EntityId => registration.map_or("", |r| r.entity_id.as_str()),
            Field::TemplateId => registration.map_or("", |r| r.template_id.as_str()),
        }
    }
}

/// A string of the template: text, and placeholders between.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Field(Field),
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// Holds no placeholder: written as it was read.
    Fixed(String),
    Text(Vec<Piece>),
    Array(Vec<Node>),
    Object(Vec<(Vec<Piece>, Node)>),
}

/// A JSON body template whose strings (keys too) may hold placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct BodyTemplate(Node);

impl BodyTemplate {
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        let template: Value = serde_json::from_str(json)?;
        Ok(BodyTemplate(node(&template)))
    }

    /// Whether some string of the template holds `field`.
    pub fn mentions(&self, field: Field) -> bool {
        mentions(&self.0, field)
    }

    /// The body for `message`: every placeholder replaced by its value, JSON-escaped, so a
    /// value can never break out of its string; a value is never read for placeholders
    /// itself. Keys come in the template's order.
    pub fn write(&self, message: &OutboundMessage) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::with_capacity(256);
        let mut scratch = String::new();
        write(&self.0, message, &mut out, &mut scratch)?;
        Ok(out)
    }
}

/// The template's node for `value`; a part that holds no placeholder, however deep, is kept
/// as its JSON text.
fn node(value: &Value) -> Node {
    let built = match value {
        Value::String(text) => Node::Text(pieces(text)),
        Value::Array(items) => Node::Array(items.iter().map(node).collect()),
        Value::Object(map) => Node::Object(
            map.iter()
                .map(|(key, item)| (pieces(key), node(item)))
                .collect(),
        ),
        other => return Node::Fixed(other.to_string()),
    };
    if Field::ALL.iter().any(|(_, field)| mentions(&built, *field)) {
        built
    } else {
        Node::Fixed(value.to_string())
    }
}

/// `text` split at its placeholders; a `{` that starts none is text.
fn pieces(text: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut plain = String::new();
    let mut rest = text;
    while let Some(brace) = rest.find('{') {
        plain.push_str(&rest[..brace]);
        rest = &rest[brace..];
        match Field::ALL.iter().find(|(name, _)| rest.starts_with(name)) {
            Some((name, field)) => {
                if !plain.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut plain)));
                }
                pieces.push(Piece::Field(*field));
                rest = &rest[name.len()..];
            }
            None => {
                plain.push('{');
                rest = &rest[1..];
            }
        }
    }
    plain.push_str(rest);
    if !plain.is_empty() {
        pieces.push(Piece::Text(plain));
    }
    pieces
}

fn mentions(node: &Node, field: Field) -> bool {
    let in_pieces = |pieces: &[Piece]| pieces.contains(&Piece::Field(field));
    match node {
        Node::Fixed(_) => false,
        Node::Text(pieces) => in_pieces(pieces),
        Node::Array(items) => items.iter().any(|item| mentions(item, field)),
        Node::Object(members) => members
            .iter()
            .any(|(key, item)| in_pieces(key) || mentions(item, field)),
    }
}

fn write(
    node: &Node,
    message: &OutboundMessage,
    out: &mut Vec<u8>,
    scratch: &mut String,
) -> Result<(), serde_json::Error> {
    match node {
        Node::Fixed(json) => out.extend_from_slice(json.as_bytes()),
        Node::Text(pieces) => write_text(pieces, message, out, scratch)?,
        Node::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write(item, message, out, scratch)?;
            }
            out.push(b']');
        }
        Node::Object(members) => {
            out.push(b'{');
            for (index, (key, item)) in members.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_text(key, message, out, scratch)?;
                out.push(b':');
                write(item, message, out, scratch)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Writes `pieces` filled in as one JSON string.
fn write_text(
    pieces: &[Piece],
    message: &OutboundMessage,
    out: &mut Vec<u8>,
    scratch: &mut String,
) -> Result<(), serde_json::Error> {
    scratch.clear();
    for piece in pieces {
        match piece {
            Piece::Text(text) => scratch.push_str(text),
            Piece::Field(field) => scratch.push_str(field.of(message)),
        }
    }
    serde_json::to_writer(&mut *out, scratch.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, JobId, VerificationId};

    fn message(body: &str) -> OutboundMessage {
        let verification_id = VerificationId::generate();
        OutboundMessage {
            job_id: JobId::new(&verification_id, 1),
            verification_id,
            tenant: "acme".into(),
            channel: Channel::Sms,
            to: "+4915112345678".into(),
            body: body.into(),
            locale: None,
            code: crate::domain::OtpCode::parse("123456").unwrap(),
            sender_id: None,
            registration: None,
        }
    }

    fn rendered(template: &str, message: &OutboundMessage) -> Value {
        let body = BodyTemplate::parse(template)
            .unwrap()
            .write(message)
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    #[test]
    fn values_are_escaped_inside_their_strings() {
        let message = message("12\"34\n{to}");
        let back = rendered(
            r#"{"to":"{to}","text":"Code: {body}","n":[1,"{channel}"],"fixed":{"a":[true,null,2.5]}}"#,
            &message,
        );
        assert_eq!(back["to"], "+4915112345678");
        assert_eq!(
            back["text"], "Code: 12\"34\n{to}",
            "a value is not filled in again"
        );
        assert_eq!(back["n"][1], "sms");
        assert_eq!(back["n"][0], 1);
        assert_eq!(back["fixed"], serde_json::json!({"a": [true, null, 2.5]}));
    }

    #[test]
    fn keys_hold_placeholders_and_a_brace_that_starts_none_is_text() {
        let message = message("Code 123456");
        let back = rendered(
            r#"{"msg_{channel}":"{ {body}} {unknown} {","id":"{verification_id}"}"#,
            &message,
        );
        assert_eq!(back["msg_sms"], "{ Code 123456} {unknown} {");
        assert_eq!(back["id"], message.verification_id.as_str());
    }

    #[test]
    fn a_registration_fills_its_placeholders_and_none_leaves_them_empty() {
        let template = r#"{"dlt":{"pe_id":"{entity_id}","template_id":"{template_id}"}}"#;
        let mut message = message("Code 123456");
        assert_eq!(rendered(template, &message)["dlt"]["pe_id"], "");
        message.registration = Some(crate::providers::Registration {
            entity_id: "1101234567890123456".into(),
            template_id: "1107161234567890123".into(),
        });
        let back = rendered(template, &message);
        assert_eq!(back["dlt"]["pe_id"], "1101234567890123456");
        assert_eq!(back["dlt"]["template_id"], "1107161234567890123");
    }

    #[test]
    fn a_template_without_placeholders_is_written_as_read() {
        let template = r#"{"b":[1,2,{"c":"d"}],"a":"x"}"#;
        let body = BodyTemplate::parse(template)
            .unwrap()
            .write(&message("Code 1"))
            .unwrap();
        let expected = serde_json::to_vec(&serde_json::from_str::<Value>(template).unwrap());
        assert_eq!(body, expected.unwrap());
    }

    #[test]
    fn mentions_finds_a_placeholder_in_keys_and_nested_strings() {
        let template = BodyTemplate::parse(r#"{"x":[{"{to}":1}],"y":"say {body}"}"#).unwrap();
        assert!(template.mentions(Field::To));
        assert!(template.mentions(Field::Body));
        assert!(!template.mentions(Field::Channel));
    }
}
