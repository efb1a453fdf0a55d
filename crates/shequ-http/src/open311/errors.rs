//! Errors in the spec's format: `[{code, description}]` or
//! `<errors><error><code/><description/></error></errors>`, the body's code equal to the HTTP
//! status. The status is the error's kind's (`crate::error`), as under `/api/v1`, with one
//! reading of the spec: a missing or invalid `api_key` is a 403 (`access.rs`), as the spec
//! says, not the 401 of `/api/v1`.

use axum::http::StatusCode;
use axum::response::Response;
use shequ_service::ServiceError;

use super::wire::{Document, Format, Node};
use crate::error::{ErrorKind, Failure};

/// An error answer: its status and one description per problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub status: StatusCode,
    pub descriptions: Vec<String>,
}

impl Problem {
    pub fn new(kind: ErrorKind, description: impl Into<String>) -> Self {
        Self::each(kind, vec![description.into()])
    }

    /// One error per description, all of `kind`.
    pub fn each(kind: ErrorKind, descriptions: Vec<String>) -> Self {
        Self { status: kind.status(), descriptions }
    }

    pub fn bad_request(description: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, description)
    }

    pub fn not_found(description: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, description)
    }

    pub fn forbidden(description: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, description)
    }

    /// A method the resource does not take: the router's answer, before any service is asked.
    pub fn method_not_allowed(description: impl Into<String>) -> Self {
        Self { status: StatusCode::METHOD_NOT_ALLOWED, descriptions: vec![description.into()] }
    }

    pub fn document(&self) -> Document {
        let code = i64::from(self.status.as_u16());
        let errors = self
            .descriptions
            .iter()
            .map(|description| {
                Node::Record(vec![
                    ("code", Node::Int(code)),
                    ("description", Node::text(description.clone())),
                ])
            })
            .collect();
        Document::list("errors", "error", errors)
    }

    pub fn render(&self, format: Format) -> Response {
        self.document().render(format, self.status)
    }
}

impl From<Failure> for Problem {
    /// A refusal is one error per rule it broke; a service's 403 says it is one.
    fn from(failure: Failure) -> Self {
        let descriptions = match (failure.kind, failure.violations) {
            (_, Some(violations)) => violations
                .iter()
                .map(|violation| {
                    format!(
                        "refused ({}, {}): {}: {}",
                        violation.rule, violation.clause, violation.message, violation.detail
                    )
                })
                .collect(),
            (ErrorKind::Forbidden, None) => vec![format!("forbidden: {}", failure.message)],
            (_, None) => vec![failure.message],
        };
        Self::each(failure.kind, descriptions)
    }
}

impl From<ServiceError> for Problem {
    fn from(error: ServiceError) -> Self {
        Failure::from(error).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_the_spec_shape() {
        let problem = Problem::forbidden("api_key is required");
        let json = serde_json::to_string(&problem.document().body).unwrap();
        assert_eq!(json, r#"[{"code":403,"description":"api_key is required"}]"#);
        let xml = String::from_utf8(problem.document().to_xml()).unwrap();
        assert!(xml.contains(
            "<errors>\n  <error>\n    <code>403</code>\n    <description>api_key is required</description>"
        ));
    }

    #[test]
    fn a_service_error_has_the_status_of_its_kind() {
        let conflict = shequ_store::StoreError::Conflict {
            stream: "request-1".into(),
            expected: shequ_store::ExpectedRevision::NoStream,
            actual: Some(2),
        };
        assert_eq!(Problem::from(ServiceError::Store(conflict)).status, StatusCode::CONFLICT);
        let refused = Problem::from(ServiceError::Refused(Vec::new()));
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
        let forbidden = Problem::from(ServiceError::Forbidden("resident may not".into()));
        assert_eq!(forbidden.descriptions, ["forbidden: resident may not"]);
    }
}
