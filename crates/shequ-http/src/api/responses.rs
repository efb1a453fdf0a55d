//! The error answers of `/api/v1` in the OpenAPI document, declared once: one shared response
//! per [`ErrorKind`] (`#/components/responses/…`, an [`ErrorBody`] with a general description),
//! which every operation refers to. An operation that can say more of what an error means
//! there ("No such mandate") says it in its reference, which overrides the shared description
//! (OpenAPI 3.1's Reference Object). [`error_responses!`] declares the errors of one kind of
//! operation, for its `#[utoipa::path(responses(…))]`.

use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{Content, Ref, RefOr};

use crate::error::ErrorKind;

/// The shared responses, by name, for the document's `components`.
pub fn components() -> impl Iterator<Item = (String, RefOr<Response>)> {
    ErrorKind::ALL.into_iter().map(|kind| {
        let content = Content::new(Some(Ref::from_schema_name("ErrorBody")));
        let response = ResponseBuilder::new()
            .description(description(kind))
            .content("application/json", content)
            .build();
        (name(kind).to_owned(), RefOr::T(response))
    })
}

/// An operation's answer of `kind`: the shared response, with `said` as its description when
/// the operation says more than the shared one.
pub fn reference(kind: ErrorKind, said: Option<&str>) -> (String, RefOr<Response>) {
    let mut reference = Ref::from_response_name(name(kind));
    reference.description = said.filter(|said| *said != description(kind)).unwrap_or_default().to_owned();
    (kind.status().as_str().to_owned(), RefOr::Ref(reference))
}

/// What the answer of `response` says: its own description, or its shared one's.
pub fn described(response: &RefOr<Response>) -> String {
    match response {
        RefOr::T(response) => response.description.clone(),
        RefOr::Ref(reference) if !reference.description.is_empty() => reference.description.clone(),
        RefOr::Ref(reference) => ErrorKind::ALL
            .into_iter()
            .find(|kind| reference.ref_location == Ref::from_response_name(name(*kind)).ref_location)
            .map(|kind| description(kind).to_owned())
            .unwrap_or_default(),
    }
}

/// Sets what the answer of `response` says: on the reference when it is one.
pub fn describe(response: &mut RefOr<Response>, description: String) {
    match response {
        RefOr::T(response) => response.description = description,
        RefOr::Ref(reference) => reference.description = description,
    }
}

fn name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::BadRequest => "BadRequest",
        ErrorKind::Unauthorized => "Unauthorized",
        ErrorKind::Forbidden => "Forbidden",
        ErrorKind::NotFound => "NotFound",
        ErrorKind::Conflict => "Conflict",
        ErrorKind::TooLarge => "TooLarge",
        ErrorKind::Refused => "Refused",
        ErrorKind::Internal => "Internal",
    }
}

fn description(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::BadRequest => "Malformed input, naming the field",
        ErrorKind::Unauthorized => "No bearer token, or not a valid one",
        ErrorKind::Forbidden => "Outside the caller's role or place (`policies/authz`)",
        ErrorKind::NotFound => "What the call names does not exist",
        ErrorKind::Conflict => "The record changed meanwhile: read it again and retry",
        ErrorKind::TooLarge => "The body is larger than 64 KiB",
        ErrorKind::Refused => "Refused by a business rule or the access policy, citing it",
        ErrorKind::Internal => "Internal error: logged, no details shown",
    }
}

/// Declares a type listing the error answers of one kind of operation, for
/// `#[utoipa::path(responses(…))]`: each a kind of [`ErrorKind`], optionally with what it means
/// for that operation.
///
/// ```ignore
/// error_responses!(ReadErrors: Forbidden, NotFound("No such mandate"));
/// ```
macro_rules! error_responses {
    ($(#[$meta:meta])* $visibility:vis $name:ident: $($kind:ident $(($said:literal))?),+ $(,)?) => {
        $(#[$meta])*
        $visibility struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                [$($crate::api::responses::reference(
                    $crate::error::ErrorKind::$kind,
                    None$(.or(Some($said)))?,
                )),+]
                .into_iter()
                .collect()
            }
        }
    };
}

pub(crate) use error_responses;

error_responses!(
    /// A list's: a malformed filter, cursor or limit.
    pub ListErrors: BadRequest("A malformed filter, cursor or limit (1–500), naming it")
);

error_responses!(
    /// A command on an existing mandate's: spending from it, or any of its steps.
    pub MandateCommandErrors: BadRequest,
    Forbidden,
    NotFound("No such mandate, or an organisation it names is unknown"),
    Conflict,
    Refused,
);
