//! What goes over the wire: one document tree rendered as JSON or as XML (the Spark convention
//! the spec's JSON is defined by: a list's XML element wraps one element per item). The spec's
//! error bodies are such documents too (`errors.rs`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";
pub const XML_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// The response format, chosen by the path's suffix (`services.xml`, `requests/ID.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    /// Splits `name.fmt` into `name` and its format; `None` for any other suffix.
    pub fn split(file: &str) -> Option<(&str, Format)> {
        let (name, suffix) = file.rsplit_once('.')?;
        let format = match suffix {
            "json" => Format::Json,
            "xml" => Format::Xml,
            _ => return None,
        };
        Some((name, format))
    }

    /// The format to answer in when the path named none we serve: JSON for a `.json` path,
    /// else XML, the format the spec requires.
    pub fn guess(path: &str) -> Format {
        match path.ends_with(".json") {
            true => Format::Json,
            false => Format::Xml,
        }
    }
}

/// A document: a tree of records, lists and scalars, in the spec's field order.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// JSON `null`; an empty XML element.
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// Fields in order: a JSON object, XML child elements.
    Record(Vec<(&'static str, Node)>),
    /// A JSON array; in XML, one `item` element per entry inside the list's element.
    List {
        item: &'static str,
        items: Vec<Node>,
    },
}

impl Node {
    pub fn text(value: impl Into<String>) -> Node {
        Node::Text(value.into())
    }

    pub fn optional_text(value: Option<impl Into<String>>) -> Node {
        value.map_or(Node::Null, |value| Node::Text(value.into()))
    }

    pub fn optional_float(value: Option<f64>) -> Node {
        match value {
            Some(value) if value.is_finite() => Node::Float(value),
            _ => Node::Null,
        }
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => serializer.serialize_none(),
            Node::Bool(value) => serializer.serialize_bool(*value),
            Node::Int(value) => serializer.serialize_i64(*value),
            Node::Float(value) => serializer.serialize_f64(*value),
            Node::Text(value) => serializer.serialize_str(value),
            Node::Record(fields) => {
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (name, value) in fields {
                    map.serialize_entry(name, value)?;
                }
                map.end()
            }
            Node::List { items, .. } => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
        }
    }
}

/// A whole answer: its XML root element's name and its body.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub root: &'static str,
    pub body: Node,
}

impl Document {
    /// `<root><item>…</item>…</root>`, a JSON array.
    pub fn list(root: &'static str, item: &'static str, items: Vec<Node>) -> Self {
        Self { root, body: Node::List { item, items } }
    }

    pub fn render(&self, format: Format, status: StatusCode) -> Response {
        let (content_type, body) = match format {
            Format::Json => (JSON_CONTENT_TYPE, serde_json::to_vec(&self.body)),
            Format::Xml => (XML_CONTENT_TYPE, Ok(self.to_xml())),
        };
        match body {
            Ok(body) => {
                let mut response = (status, body).into_response();
                response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                response
            }
            Err(error) => {
                tracing::error!(%error, "an Open311 document did not serialise");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }

    /// The XML text, with its declaration. Text is escaped by quick-xml; characters XML 1.0
    /// cannot carry at all (most C0 controls) become U+FFFD.
    pub fn to_xml(&self) -> Vec<u8> {
        let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
        // Writing into a Vec<u8> cannot fail.
        let _ = writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        let _ = write_element(&mut writer, self.root, &self.body);
        let mut bytes = writer.into_inner();
        bytes.push(b'\n');
        bytes
    }
}

fn write_element(writer: &mut Writer<Vec<u8>>, name: &str, node: &Node) -> std::io::Result<()> {
    let scalar = match node {
        Node::Null => return writer.write_event(Event::Empty(BytesStart::new(name))),
        Node::Bool(value) => value.to_string(),
        Node::Int(value) => value.to_string(),
        Node::Float(value) => value.to_string(),
        Node::Text(value) => xml_safe(value),
        Node::Record(fields) => {
            writer.write_event(Event::Start(BytesStart::new(name)))?;
            for (field, value) in fields {
                write_element(writer, field, value)?;
            }
            return writer.write_event(Event::End(BytesEnd::new(name)));
        }
        Node::List { item, items } => {
            if items.is_empty() {
                return writer.write_event(Event::Empty(BytesStart::new(name)));
            }
            writer.write_event(Event::Start(BytesStart::new(name)))?;
            for value in items {
                write_element(writer, item, value)?;
            }
            return writer.write_event(Event::End(BytesEnd::new(name)));
        }
    };
    writer.create_element(name).write_text_content(BytesText::new(&scalar))?;
    Ok(())
}

/// `text` without the characters XML 1.0 forbids even escaped.
fn xml_safe(text: &str) -> String {
    text.chars()
        .map(|character| match character {
            '\t' | '\n' | '\r' => character,
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_comes_from_the_suffix() {
        assert_eq!(Format::split("services.xml"), Some(("services", Format::Xml)));
        assert_eq!(Format::split("EMP-001.json"), Some(("EMP-001", Format::Json)));
        assert_eq!(Format::split("services.html"), None);
        assert_eq!(Format::split("services"), None);
    }

    #[test]
    fn xml_follows_the_spark_convention_and_escapes() {
        let document = Document::list(
            "service_requests",
            "request",
            vec![Node::Record(vec![
                ("service_request_id", Node::text("a<b&c")),
                ("lat", Node::Float(39.915)),
                ("media_url", Node::Null),
                ("note", Node::text("bell\u{7}")),
            ])],
        );
        let xml = String::from_utf8(document.to_xml()).unwrap();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
        assert!(xml.contains(
            "<service_requests>\n  <request>\n    <service_request_id>a&lt;b&amp;c</service_request_id>"
        ));
        assert!(xml.contains("<lat>39.915</lat>") && xml.contains("<media_url/>"));
        assert!(xml.contains("<note>bell\u{fffd}</note>"));
        let json = serde_json::to_string(&document.body).unwrap();
        assert_eq!(
            json,
            r#"[{"service_request_id":"a<b&c","lat":39.915,"media_url":null,"note":"bell\u0007"}]"#
        );
    }
}
