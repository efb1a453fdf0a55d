//! shequ's declarative policies.
//!
//! The bundle is every `.rego` file under `policies/` except the `*_test.rego` files, embedded
//! in the binary and identified by its content digest. Decisions are made by regorus (Rego
//! v1): `data.shequ.access.violations` for the access rules and `data.shequ.authz` for who
//! may do what. A decision records the bundle digest and the input it saw, so an inspector can
//! re-run it later on the bundle text recorded in the log.

mod bundle;
mod engine;

pub use bundle::{PolicyBundle, BUNDLE_FILES_MAX, BUNDLE_FILE_BYTES_MAX};
pub use engine::{AccessInput, AuthzDecision, Policies, PolicyError, RouteDecision};

/// The `policies/` folder as shipped, embedded at build time: the bundle, its tests, and the
/// starting catalogue.
pub static POLICIES: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/../../policies");

/// The starting catalogue shipped in `policies/data/catalogue.json`.
pub fn starting_catalogue() -> Result<Vec<shequ_domain::catalogue::Matter>, PolicyError> {
    #[derive(serde::Deserialize)]
    struct Shipped {
        matters: Vec<shequ_domain::catalogue::Matter>,
    }
    let file = POLICIES
        .get_file("data/catalogue.json")
        .ok_or_else(|| PolicyError::Bundle("policies/data/catalogue.json is missing".into()))?;
    let text =
        file.contents_utf8().ok_or_else(|| PolicyError::Bundle("catalogue.json is not UTF-8".into()))?;
    let shipped: Shipped = serde_json::from_str(text)
        .map_err(|error| PolicyError::Bundle(format!("catalogue.json: {error}")))?;
    Ok(shipped.matters)
}
