//! Form and query parameters, read as the spec's "Optional Arguments".

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};

use super::errors::Problem;
use crate::error::Failure;

/// Form or query parameters, in the order sent. An empty value counts as not sent (the spec's
/// "Optional Arguments").
#[derive(Debug, Default)]
pub struct Params {
    pub pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(bytes: &[u8]) -> Self {
        Self { pairs: form_urlencoded::parse(bytes).into_owned().collect() }
    }

    pub fn from_query(query: Option<&str>) -> Self {
        Self::parse(query.unwrap_or_default().as_bytes())
    }

    /// A POST body: `application/x-www-form-urlencoded`, as the spec says.
    pub fn from_form(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Self, Problem> {
        let body = body.map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Failure::too_large().into(),
            _ => Problem::bad_request(format!("the body could not be read: {}", rejection.body_text())),
        })?;
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
        let is_form = content_type.is_none_or(|value| {
            value
                .split(';')
                .next()
                .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
        });
        if !body.is_empty() && !is_form {
            return Err(Problem::bad_request(
                "Content-Type: a request is posted as application/x-www-form-urlencoded",
            ));
        }
        Ok(Self::parse(&body))
    }

    /// These parameters, then `other`'s.
    pub fn with(mut self, other: Params) -> Self {
        self.pairs.extend(other.pairs);
        self
    }

    /// The one value of `name`, trimmed; sent twice with different values is a 400.
    pub fn get<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, Problem> {
        let mut found: Option<&str> = None;
        for value in self.values(name) {
            match found {
                None => found = Some(value),
                Some(first) if first == value => {}
                Some(_) => {
                    return Err(Problem::bad_request(format!("{name}: sent twice with different values")))
                }
            }
        }
        Ok(found)
    }

    /// Every non-empty value of `name`, trimmed.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// A comma-delimited list, which may also be declared several times.
    pub fn list<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        self.values(name)
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_treat_empty_as_absent_and_refuse_conflicts() {
        let params = Params::parse(b"a=&b=1&b=1&c=1&c=2&s=open,closed&s=open");
        assert_eq!(params.get("a").unwrap(), None);
        assert_eq!(params.get("b").unwrap(), Some("1"));
        assert_eq!(params.get("c").unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(params.list("s"), ["open", "closed", "open"]);
    }
}
