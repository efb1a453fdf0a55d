use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use regorus::rvm::program::Program;
use regorus::rvm::RegoVM;
use regorus::{Engine, Value};
use serde::{Deserialize, Serialize};
use shequ_domain::mandate::Violation;
use shequ_domain::recorded::RecordedInput;

use crate::bundle::PolicyBundle;

const ACCESS_RULE: &str = "data.shequ.access.violations";
const AUTHZ_ALLOW_RULE: &str = "data.shequ.authz.allow";
const AUTHZ_REASON_RULE: &str = "data.shequ.authz.reason";
const ROUTING_ROUTE_RULE: &str = "data.shequ.routing.route";
const ROUTING_REFUSAL_RULE: &str = "data.shequ.routing.refusal";

#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    #[error("policy bundle: {0}")]
    Bundle(String),
    #[error("policy evaluation failed: {0}")]
    Evaluation(String),
    #[error("the policy answered in an unexpected shape: {0}")]
    Shape(String),
}

/// Who may do it, as the `policies/authz` bundle decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthzDecision {
    pub allow: bool,
    /// Why not, when not allowed; empty when allowed.
    pub reason: String,
}

/// Where `policies/routing` sends a service request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteDecision {
    /// `community`, `agent` or `delegating_unit`.
    pub route: String,
    pub handler: Option<uuid::Uuid>,
    pub mandate: Option<uuid::Uuid>,
    pub reason: String,
    pub clause: String,
}

/// A prepared policy engine over one bundle. Cheap to clone (one shared allocation: every
/// request's handler holds a clone); evaluation works on a copy of the prepared interpreter or
/// on a pooled VM, so `&self` is enough and any number of tasks can decide at once.
#[derive(Debug, Clone)]
pub struct Policies(Arc<Prepared>);

#[derive(Debug, Clone)]
struct Prepared {
    engine: Engine,
    bundle: Arc<PolicyBundle>,
    /// The access rules on regorus's bytecode VM (ADR 0014), for the shipped bundle; else why
    /// not (another bundle, the VM's compiler refused it, the interpreter was chosen), and they
    /// are decided on the interpreter.
    access_vm: Result<Arc<AccessVm>, PolicyError>,
    /// Authorisation answers by input: `policies/authz` is a pure function of its input and
    /// the bundle never changes, so an answer once given is the answer (shared by clones).
    authz_answers: Answers<AuthzDecision>,
    /// Routing answers by input, for the same reason: requests for one matter at one station
    /// in one state of its mandates all route alike.
    route_answers: Answers<Result<RouteDecision, Violation>>,
}

/// `policies/access`'s input as the service builds it (`Service::decide`): the shape
/// [`typed_input`] checks, by construction.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AccessInput<'a> {
    pub catalogue_version: u64,
    pub matter: Option<&'a shequ_domain::catalogue::Matter>,
    pub proposal: &'a shequ_domain::mandate::Proposal,
    /// Absent, not null, when not asked: the rules tell the two apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_fen: Option<i64>,
}

/// The most answers of one kind remembered; past it the memory starts again.
const ANSWERS_MAX: usize = 65_536;

/// Answers of a pure rule by the text of its input, shared by clones.
#[derive(Debug)]
struct Answers<T>(Arc<Mutex<HashMap<String, T>>>);

impl<T> Clone for Answers<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Default for Answers<T> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<T: Clone> Answers<T> {
    /// The answer remembered for `input`, or `decide`'s, remembered.
    fn get_or_decide(
        &self,
        key: &str,
        decide: impl FnOnce() -> Result<T, PolicyError>,
    ) -> Result<T, PolicyError> {
        if let Some(known) = self.0.lock().unwrap_or_else(PoisonError::into_inner).get(key) {
            return Ok(known.clone());
        }
        let answer = decide()?;
        let mut answers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if answers.len() >= ANSWERS_MAX {
            answers.clear();
        }
        answers.insert(key.to_owned(), answer.clone());
        Ok(answer)
    }
}

impl Policies {
    /// Loads and prepares `bundle`. Parsing and rule analysis happen here, once; each decision
    /// then only sets its input and evaluates.
    pub fn new(bundle: PolicyBundle) -> Result<Self, PolicyError> {
        let mut engine = Engine::new();
        for (path, text) in bundle.files() {
            engine
                .add_policy(path.clone(), text.clone())
                .map_err(|error| PolicyError::Bundle(format!("{path}: {error}")))?;
        }
        // regorus prepares an engine on its first evaluation, and a clone keeps that work:
        // evaluate once here so that no decision pays for it.
        engine.set_input(Value::new_object());
        // A bundle recorded before service requests existed has no routing package; it still
        // loads, so its access decisions can be re-run.
        let routes = bundle.files().keys().any(|path| path.starts_with("routing/"));
        let rules = [ACCESS_RULE, AUTHZ_ALLOW_RULE].into_iter().chain(routes.then_some(ROUTING_ROUTE_RULE));
        for rule in rules {
            engine
                .eval_rule(rule.to_owned())
                .map_err(|error| PolicyError::Bundle(format!("{rule}: {error}")))?;
        }
        // Only the shipped bundle is tested equal on both engines; any other (a recorded one, a
        // future one) is decided on the reference.
        let access_vm = match bundle.digest() == PolicyBundle::embedded().digest() {
            true => AccessVm::compile(&engine).map(Arc::new),
            false => Err(PolicyError::Bundle("not the shipped bundle: decided on the interpreter".into())),
        };
        Ok(Self(Arc::new(Prepared {
            engine,
            bundle: Arc::new(bundle),
            access_vm,
            authz_answers: Answers::default(),
            route_answers: Answers::default(),
        })))
    }

    /// The bundle shipped in this build, prepared.
    pub fn embedded() -> Result<Self, PolicyError> {
        Self::new(PolicyBundle::embedded())
    }

    pub fn bundle(&self) -> &PolicyBundle {
        &self.0.bundle
    }

    /// The access rules' verdict on `input`: every violation, in a stable order. Empty admits.
    /// Decided on regorus's bytecode VM for the shipped bundle and an input of the service's
    /// shape (`typed_input`), else on its interpreter; on those inputs the two are
    /// property-tested to give the same verdicts (ADR 0014, `engine/tests.rs`).
    pub fn decide_access(&self, input: &serde_json::Value) -> Result<Vec<Violation>, PolicyError> {
        match &self.0.access_vm {
            Ok(vm) if typed_input(input) => violations(vm.run(regorus_input(input)?)?),
            _ => self.decide_access_interpreted(input),
        }
    }

    /// [`Self::decide_access`] on the input as the service builds it, and that input as it is
    /// recorded with the decision. Its types give it the VM's shape, so it is not checked; it
    /// is written to text once, for the record, and handed to the VM as a tree.
    pub fn decide_access_input(
        &self,
        input: &AccessInput<'_>,
    ) -> Result<(RecordedInput, Vec<Violation>), PolicyError> {
        let shape = |error: serde_json::Error| PolicyError::Shape(format!("input: {error}"));
        let recorded = RecordedInput::of(input).map_err(shape)?;
        let tree = serde_json::to_value(input).map_err(shape)?;
        let violations = match &self.0.access_vm {
            Ok(vm) => violations(vm.run(regorus_input(&tree)?)?)?,
            Err(_) => self.decide_access_interpreted(&tree)?,
        };
        Ok((recorded, violations))
    }

    /// The access rules' verdict on regorus's interpreter, the reference implementation.
    pub fn decide_access_interpreted(
        &self,
        input: &serde_json::Value,
    ) -> Result<Vec<Violation>, PolicyError> {
        violations(self.evaluate(ACCESS_RULE, input)?)
    }

    /// The same policies with access decided on the interpreter, the reference: for measuring
    /// the two engines side by side (`shequ-bench load --access-engine interpreter`).
    pub fn on_interpreter(self) -> Self {
        let chosen = PolicyError::Bundle("the interpreter was chosen".into());
        Self(Arc::new(Prepared { access_vm: Err(chosen), ..Prepared::clone(&self.0) }))
    }

    /// `Ok` when access decisions on inputs of the service's shape run on the bytecode VM;
    /// else why not, and they all run on the interpreter.
    pub fn access_on_vm(&self) -> Result<(), &PolicyError> {
        self.0.access_vm.as_ref().map(|_| ())
    }

    /// Whether the actor may take the action on the target (`policies/authz`).
    pub fn authorize(&self, input: &serde_json::Value) -> Result<AuthzDecision, PolicyError> {
        self.authorize_keyed(&input.to_string(), || Ok(input.clone()))
    }

    /// [`Self::authorize`] on the input's JSON text: the text is the key of the answers
    /// remembered, and it is parsed only when none is.
    pub fn authorize_text(&self, input: &str) -> Result<AuthzDecision, PolicyError> {
        self.authorize_keyed(input, || {
            serde_json::from_str(input).map_err(|error| PolicyError::Shape(format!("input: {error}")))
        })
    }

    fn authorize_keyed(
        &self,
        key: &str,
        input: impl FnOnce() -> Result<serde_json::Value, PolicyError>,
    ) -> Result<AuthzDecision, PolicyError> {
        self.0.authz_answers.get_or_decide(key, || {
            let input = &input()?;
            Ok(match self.evaluate(AUTHZ_ALLOW_RULE, input)? {
                Value::Bool(true) => AuthzDecision { allow: true, reason: String::new() },
                // Why not is asked only when not.
                Value::Bool(false) => match self.evaluate(AUTHZ_REASON_RULE, input)? {
                    Value::String(reason) => AuthzDecision { allow: false, reason: reason.to_string() },
                    reason => return Err(PolicyError::Shape(format!("authz answered reason={reason:?}"))),
                },
                allow => return Err(PolicyError::Shape(format!("authz answered allow={allow:?}"))),
            })
        })
    }

    /// Where a service request goes (`policies/routing`): the route, or the refusal (a
    /// violation with its clause) when the policy takes the request nowhere.
    pub fn route(&self, input: &serde_json::Value) -> Result<Result<RouteDecision, Violation>, PolicyError> {
        self.route_keyed(&input.to_string(), || Ok(input.clone()))
    }

    /// [`Self::route`] on an input as recorded (its JSON text): the text is the key of the
    /// answers remembered, and it is parsed only when none is.
    pub fn route_recorded(
        &self,
        input: &RecordedInput,
    ) -> Result<Result<RouteDecision, Violation>, PolicyError> {
        self.route_keyed(input.get(), || parsed(input))
    }

    fn route_keyed(
        &self,
        key: &str,
        input: impl FnOnce() -> Result<serde_json::Value, PolicyError>,
    ) -> Result<Result<RouteDecision, Violation>, PolicyError> {
        self.0.route_answers.get_or_decide(key, || {
            let input = &input()?;
            let shape = |error: serde_json::Error| PolicyError::Shape(format!("routing: {error}"));
            let refusal = self.evaluate(ROUTING_REFUSAL_RULE, input)?;
            if refusal != Value::Undefined {
                let json = serde_json::to_value(&refusal).map_err(shape)?;
                return Ok(Err(serde_json::from_value(json).map_err(shape)?));
            }
            match self.evaluate(ROUTING_ROUTE_RULE, input)? {
                Value::Undefined => {
                    Err(PolicyError::Shape("routing gave neither a route nor a refusal".into()))
                }
                route => {
                    let json = serde_json::to_value(&route).map_err(shape)?;
                    Ok(Ok(serde_json::from_value(json).map_err(shape)?))
                }
            }
        })
    }

    fn evaluate(&self, rule: &str, input: &serde_json::Value) -> Result<Value, PolicyError> {
        let mut engine = self.0.engine.clone();
        engine.set_input(regorus_input(input)?);
        engine.eval_rule(rule.to_owned()).map_err(|error| PolicyError::Evaluation(format!("{rule}: {error}")))
    }
}

/// Whether an access input has the shape and types the service builds (`Service::decide`):
/// a catalogue version, the matter as a catalogue entry or null, the proposal, and the
/// balance as an integer or absent. Only such inputs go to the VM. Inside a rule body the VM
/// drops an error where the interpreter fails (a string `amount_fen` times a volume, say), so
/// the rule would silently not fire; anything else is decided on the interpreter (ADR 0014).
fn typed_input(input: &serde_json::Value) -> bool {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read only to check the types
    struct Typed {
        catalogue_version: u64,
        matter: Option<shequ_domain::catalogue::Matter>,
        proposal: shequ_domain::mandate::Proposal,
        available_fen: Option<i64>,
    }
    // `null` would read as absent, but the rules tell the two apart.
    let balance_typed = input.get("available_fen").is_none_or(serde_json::Value::is_i64);
    balance_typed && Typed::deserialize(input).is_ok()
}

fn parsed(input: &RecordedInput) -> Result<serde_json::Value, PolicyError> {
    input.value().map_err(|error| PolicyError::Shape(format!("input: {error}")))
}

fn regorus_input(input: &serde_json::Value) -> Result<Value, PolicyError> {
    Value::deserialize(input).map_err(|error| PolicyError::Shape(format!("input: {error}")))
}

/// The access rules' answer as violations, in a stable order.
fn violations(value: Value) -> Result<Vec<Violation>, PolicyError> {
    let json = serde_json::to_value(&value).map_err(|error| PolicyError::Shape(error.to_string()))?;
    let mut violations: Vec<Violation> = match json {
        serde_json::Value::Array(_) => serde_json::from_value(json)
            .map_err(|error| PolicyError::Shape(format!("violations: {error}")))?,
        other => return Err(PolicyError::Shape(format!("violations should be a set, not {other}"))),
    };
    violations.sort_by(|left, right| (&left.rule, &left.detail).cmp(&(&right.rule, &right.detail)));
    Ok(violations)
}

/// The most bytecode instructions one access decision may run. The shipped rules run a few
/// hundred, plus a few per power and working condition the matter lists; a decision that
/// reaches this is an error, never an admission.
const VM_INSTRUCTIONS_MAX: usize = 1_000_000;

/// The most idle VMs kept for reuse; more are built when more decide at once.
const VMS_IDLE_MAX: usize = 16;

/// The access rules compiled for regorus's bytecode VM, and VMs loaded with them, ready to run.
/// A VM runs one decision at a time (`execute` takes `&mut`), so deciding takes one from the
/// pool and puts it back; each `execute` starts from a clean state.
#[derive(Debug)]
struct AccessVm {
    program: Arc<Program>,
    idle: Mutex<Vec<RegoVM>>,
}

impl AccessVm {
    fn compile(engine: &Engine) -> Result<Self, PolicyError> {
        let mut engine = engine.clone();
        let compiled = engine
            .compile_with_entrypoint(&ACCESS_RULE.into())
            .map_err(|error| PolicyError::Bundle(format!("compile {ACCESS_RULE}: {error}")))?;
        let program =
            regorus::languages::rego::compiler::Compiler::compile_from_policy(&compiled, &[ACCESS_RULE])
                .map_err(|error| PolicyError::Bundle(format!("rvm {ACCESS_RULE}: {error}")))?;
        let access = Self { program, idle: Mutex::default() };
        let vm = access.loaded()?;
        access.put_back(vm);
        Ok(access)
    }

    fn loaded(&self) -> Result<RegoVM, PolicyError> {
        let mut vm = RegoVM::new();
        vm.load_program(Arc::clone(&self.program));
        vm.set_data(Value::new_object())
            .map_err(|error| PolicyError::Bundle(format!("rvm data: {error}")))?;
        vm.set_max_instructions(VM_INSTRUCTIONS_MAX);
        // Left lax, as the interpreter is: strict mode turns a comparison across types into an
        // error, which the VM then drops (the rule does not fire) where the interpreter
        // compares by type order. Inputs of another shape never reach the VM (`typed_input`).
        Ok(vm)
    }

    fn run(&self, input: Value) -> Result<Value, PolicyError> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut vm = match idle {
            Some(vm) => vm,
            None => self.loaded()?,
        };
        vm.set_input(input);
        let answer =
            vm.execute().map_err(|error| PolicyError::Evaluation(format!("{ACCESS_RULE} (rvm): {error}")));
        // The input stays with the VM until the next decision replaces it; it is small.
        self.put_back(vm);
        answer
    }

    fn put_back(&self, vm: RegoVM) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < VMS_IDLE_MAX {
            idle.push(vm);
        }
    }
}

#[cfg(test)]
mod tests;
