//! Signed checkpoints: the log's size and Merkle root at a moment, signed with Ed25519, and
//! recorded in the log itself (stream `checkpoint-{id}`), so they can be published and checked
//! later by anyone with the public key. The signed text is specified in `docs/audit-format.md`.

use std::path::Path;

use chrono::{SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use shequ_store::{CommandContext, EventLog, ExpectedRevision, NewEvent, StoreError, VerifyReport};
use uuid::Uuid;

use crate::ServiceError;

/// The event type of a recorded checkpoint.
pub const CHECKPOINT_EVENT: &str = "CheckpointSigned";
const KEY_BYTES: usize = 32;

/// A signed statement of the log's size and root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Checkpoint {
    pub tree_size: u64,
    /// Hex.
    pub root_hash: String,
    /// RFC 3339, UTC, seconds.
    pub signed_at: String,
    /// Ed25519 public key, hex.
    pub public_key: String,
    /// Ed25519 signature over [`Checkpoint::signed_text`], hex.
    pub signature: String,
}

impl Checkpoint {
    /// Exactly the bytes that are signed.
    pub fn signed_text(tree_size: u64, root_hash: &str, signed_at: &str) -> String {
        format!("shequ checkpoint v1\ntree_size {tree_size}\nroot_hash {root_hash}\nsigned_at {signed_at}\n")
    }
}

/// The key that signs checkpoints, kept in a key file (created on first use).
#[derive(Clone)]
pub struct CheckpointKey(SigningKey);

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "CheckpointKey({})", self.public_key_hex())
    }
}

impl CheckpointKey {
    pub fn load_or_create(path: &Path) -> Result<Self, ServiceError> {
        let secret = crate::key_file::load_or_create(path, KEY_BYTES).map_err(|reason| {
            ServiceError::Invalid(format!("checkpoint key file {}: {reason}", path.display()))
        })?;
        let bytes: [u8; KEY_BYTES] =
            secret[..KEY_BYTES].try_into().expect("the key file holds at least 32 bytes");
        Ok(Self(SigningKey::from_bytes(&bytes)))
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.0.verifying_key().to_bytes())
    }

    /// Signs the log as it stands and records the checkpoint in it.
    pub async fn sign(&self, log: &EventLog) -> Result<Checkpoint, ServiceError> {
        let tree_size = log.head().await?.position;
        let root_hash = hex::encode(log.merkle_root(tree_size).await?);
        let signed_at = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        let signature = self.0.sign(Checkpoint::signed_text(tree_size, &root_hash, &signed_at).as_bytes());
        let checkpoint = Checkpoint {
            tree_size,
            root_hash,
            signed_at,
            public_key: self.public_key_hex(),
            signature: hex::encode(signature.to_bytes()),
        };
        let data = serde_json::to_string(&checkpoint).expect("a checkpoint is plain data");
        let metadata = CommandContext::new("system:checkpoint").metadata(Utc::now()).to_json();
        let event = NewEvent {
            event_id: Uuid::now_v7(),
            event_type: CHECKPOINT_EVENT.into(),
            event_version: 1,
            data,
            metadata,
        };
        log.append(&format!("checkpoint-{}", Uuid::now_v7()), ExpectedRevision::NoStream, vec![event])
            .await?;
        Ok(checkpoint)
    }
}

/// One recorded checkpoint that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFailure {
    /// The checkpoint event's position.
    pub position: u64,
    pub tree_size: u64,
    pub reason: String,
}

/// What [`verify_log`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogVerification {
    /// The chain walk (see [`EventLog::verify`]).
    pub report: VerifyReport,
    /// Recorded checkpoints that hold (none are checked if the chain does not).
    pub checkpoints: u64,
    /// The first recorded checkpoint, in position order, that does not hold.
    pub failure: Option<CheckpointFailure>,
}

/// Checks the whole log: the hash chain, positions and revisions, and every checkpoint
/// recorded in it (its signature, and its root against the Merkle tree built from the log in
/// the same walk). The checkpoints are found first, from their own streams, so the log itself
/// is read once; a checkpoint recorded while the walk runs is checked after it, on its own.
pub async fn verify_log(log: &EventLog, progress: impl FnMut(u64)) -> Result<LogVerification, ServiceError> {
    let head = log.head().await?.position;
    let (recorded, unreadable) = match recorded_checkpoints(log, 0, head).await {
        Ok(recorded) => (recorded, None),
        // A checkpoint row that cannot be read: the walk finds it, and names it or a break
        // before it.
        Err(error @ ServiceError::Store(StoreError::Corrupt { .. })) => (Vec::new(), Some(error)),
        Err(error) => return Err(error),
    };
    let tree_sizes =
        recorded.iter().filter_map(|(_, checkpoint)| checkpoint.as_ref().ok()).map(|c| c.tree_size);
    let report = log.verify_with_roots(&tree_sizes.collect(), progress).await?;
    if report.failure.is_some() {
        return Ok(LogVerification { report, checkpoints: 0, failure: None });
    }
    if let Some(error) = unreadable {
        return Err(error);
    }
    let mut checked = 0;
    let late = recorded_checkpoints(log, head, report.head.position).await?;
    for (position, checkpoint) in recorded.into_iter().chain(late) {
        let failure = |tree_size, reason| Some(CheckpointFailure { position, tree_size, reason });
        let failure = match checkpoint {
            Err(reason) => failure(0, reason),
            Ok(checkpoint) => {
                // The signature first: a forged checkpoint costs no reading. A root not kept by
                // the walk (a checkpoint recorded during it) is computed on its own.
                let root = match (check_signature(&checkpoint), report.roots.get(&checkpoint.tree_size)) {
                    (Err(reason), _) => Err(reason),
                    (Ok(()), Some(root)) => Ok(*root),
                    (Ok(()), None) if checkpoint.tree_size > report.events => Err(format!(
                        "the log holds {} events, fewer than {}",
                        report.events, checkpoint.tree_size
                    )),
                    (Ok(()), None) => {
                        log.merkle_root(checkpoint.tree_size).await.map_err(|error| error.to_string())
                    }
                };
                match root {
                    Err(reason) => failure(checkpoint.tree_size, reason),
                    Ok(root) if hex::encode(root) != checkpoint.root_hash => failure(
                        checkpoint.tree_size,
                        format!(
                            "the log's root at size {} is {}, not the signed {}",
                            checkpoint.tree_size,
                            hex::encode(root),
                            checkpoint.root_hash
                        ),
                    ),
                    Ok(_) => None,
                }
            }
        };
        if failure.is_some() {
            return Ok(LogVerification { report, checkpoints: checked, failure });
        }
        checked += 1;
    }
    Ok(LogVerification { report, checkpoints: checked, failure: None })
}

/// The checkpoints recorded after position `after` up to `up_to`, in position order, each
/// read or the reason it cannot be.
async fn recorded_checkpoints(
    log: &EventLog,
    after: u64,
    up_to: u64,
) -> Result<Vec<(u64, Result<Checkpoint, String>)>, ServiceError> {
    let category = shequ_domain::Category::parse("checkpoint").expect("a valid category");
    let mut recorded: Vec<(u64, Result<Checkpoint, String>)> = log
        .stream_category(&category, up_to, 5_000)
        .try_filter(|event| {
            std::future::ready(event.position > after && event.event_type == CHECKPOINT_EVENT)
        })
        .map_ok(|event| {
            let checkpoint =
                serde_json::from_str(&event.data).map_err(|error| format!("unreadable checkpoint: {error}"));
            (event.position, checkpoint)
        })
        .try_collect()
        .await?;
    recorded.sort_unstable_by_key(|(position, _)| *position);
    Ok(recorded)
}

fn check_signature(checkpoint: &Checkpoint) -> Result<(), String> {
    let key: [u8; 32] = hex::decode(&checkpoint.public_key)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or("the public key is not 32 hex bytes")?;
    let key = VerifyingKey::from_bytes(&key).map_err(|error| format!("public key: {error}"))?;
    let signature: [u8; 64] = hex::decode(&checkpoint.signature)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or("the signature is not 64 hex bytes")?;
    let text = Checkpoint::signed_text(checkpoint.tree_size, &checkpoint.root_hash, &checkpoint.signed_at);
    key.verify(text.as_bytes(), &Signature::from_bytes(&signature))
        .map_err(|_| "the signature does not verify".to_owned())
}
