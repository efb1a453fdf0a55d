//! `services.{fmt}` and `services/{service_code}.{fmt}`: the published catalogue
//! (`plan:5.1-C`), one service per matter, and each matter's service definition. Public, as
//! the spec has them.

use shequ_domain::catalogue::Matter;
use shequ_domain::request::Channel;

use super::access::check_jurisdiction;
use super::errors::Problem;
use super::params::Params;
use super::wire::{Document, Node};
use super::Answer;
use crate::AppState;

/// The attribute that carries how the request reached the station.
pub const CHANNEL: &str = "channel";
/// The informational attribute that states the matter's service level.
const SERVICE_LEVEL: &str = "service_level";

pub async fn services(state: &AppState, params: &Params) -> Answer {
    check_jurisdiction(state, params, None).await?;
    let (_, matters) = state.service.catalogue().await.map_err(Problem::from)?;
    Ok(Document::list("services", "service", matters.values().map(service_node).collect()))
}

fn service_node(matter: &Matter) -> Node {
    let group = serde_json::to_value(matter.category)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default();
    Node::Record(vec![
        ("service_code", Node::text(matter.code.clone())),
        ("service_name", Node::text(matter.name.clone())),
        ("description", Node::text(matter.name_en.clone())),
        // Every service has the `channel` attribute.
        ("metadata", Node::Bool(true)),
        ("type", Node::text("realtime")),
        ("keywords", Node::text(keywords(matter))),
        ("group", Node::text(group)),
    ])
}

fn keywords(matter: &Matter) -> String {
    std::iter::once(matter.name_en.as_str())
        .chain(matter.priority_groups.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One attribute of a service definition.
pub struct AttributeDefinition {
    pub code: &'static str,
    pub variable: bool,
    datatype: &'static str,
    pub required: bool,
    datatype_description: Option<String>,
    description: String,
    pub values: Vec<(&'static str, &'static str)>,
}

/// The channels a request reaches the station by: `(key, name)`.
const CHANNELS: [(&str, &str); 5] = [
    ("counter", "At the service counter of the community service station"),
    ("phone", "By telephone to the station"),
    ("web", "Online (web or app)"),
    ("hotline", "Through the government hotline"),
    ("call_assistance", "The call-assistance line for elderly and disabled residents (priority)"),
];

pub fn channel(key: &str) -> Option<Channel> {
    match key {
        "counter" => Some(Channel::Counter),
        "phone" => Some(Channel::Phone),
        "web" => Some(Channel::Web),
        "hotline" => Some(Channel::Hotline),
        "call_assistance" => Some(Channel::CallAssistance),
        _ => None,
    }
}

/// The attributes every matter's definition has, in order.
pub fn attributes(matter: &Matter) -> Vec<AttributeDefinition> {
    let days = match matter.sla_days {
        1 => "1 day".to_owned(),
        days => format!("{days} days"),
    };
    vec![
        AttributeDefinition {
            code: CHANNEL,
            variable: true,
            datatype: "singlevaluelist",
            required: true,
            datatype_description: Some("One of the listed keys".into()),
            description: "How did the request reach the community service station? Requests on the \
                          call-assistance line for elderly and disabled residents are handled first \
                          (plan:4.3-E4)."
                .into(),
            values: CHANNELS.to_vec(),
        },
        AttributeDefinition {
            code: SERVICE_LEVEL,
            variable: false,
            datatype: "text",
            required: false,
            datatype_description: None,
            description: format!(
                "To be handled within {days} of filing. Legal basis: {}.",
                matter.legal_basis.trim_end_matches('.')
            ),
            values: Vec::new(),
        },
    ]
}

pub async fn service_definition(state: &AppState, code: &str, params: &Params) -> Answer {
    check_jurisdiction(state, params, None).await?;
    let matter = matter(state, code).await?;
    let attributes = attributes(&matter)
        .into_iter()
        .zip(1..)
        .map(|(attribute, order)| {
            let values = attribute
                .values
                .iter()
                .map(|(key, name)| Node::Record(vec![("key", Node::text(*key)), ("name", Node::text(*name))]))
                .collect();
            Node::Record(vec![
                ("variable", Node::Bool(attribute.variable)),
                ("code", Node::text(attribute.code)),
                ("datatype", Node::text(attribute.datatype)),
                ("required", Node::Bool(attribute.required)),
                ("datatype_description", Node::optional_text(attribute.datatype_description)),
                ("order", Node::Int(order)),
                ("description", Node::text(attribute.description)),
                ("values", Node::List { item: "value", items: values }),
            ])
        })
        .collect();
    Ok(Document {
        root: "service_definition",
        body: Node::Record(vec![
            ("service_code", Node::text(matter.code.clone())),
            ("attributes", Node::List { item: "attribute", items: attributes }),
        ]),
    })
}

/// The live catalogue's matter `code`, or 404.
pub async fn matter(state: &AppState, code: &str) -> Result<Matter, Problem> {
    let (_, mut matters) = state.service.catalogue().await.map_err(Problem::from)?;
    matters.remove(code).ok_or_else(|| {
        Problem::not_found(format!(
            "service_code {code} not found: it is not in the community public service catalogue (plan:5.1-C)"
        ))
    })
}
