//! The contest timers: an open contest past its deadline escalates to the district by itself,
//! once. The timers are rebuilt from the log, so they survive restarts.

use std::collections::BTreeMap;

use chrono::SecondsFormat;
use shequ_domain::mandate::{Mandate, MandateCommand};
use shequ_store::EventLog;
use uuid::Uuid;

use super::scope::Caller;
use super::Service;
use crate::error::{Result, ServiceError};

impl Service {
    /// Fires every contest timer that is due: each open contest past its deadline escalates
    /// to the district, once. The timers are rebuilt from the log, so they survive restarts.
    pub async fn escalate_due(&self) -> Result<Vec<Uuid>> {
        let now = self.clock.now().to_rfc3339_opts(SecondsFormat::Secs, true);
        let due = {
            let mut timers = self.timers.lock().await;
            timers.catch_up(&self.log).await?;
            timers.due(&now)
        };
        let mut escalated = Vec::new();
        for mandate in due {
            let command = MandateCommand::Escalate { now: now.clone() };
            match self.execute::<Mandate>(Caller::System.context(), mandate, command).await {
                Ok(_) => escalated.push(mandate),
                // Another process fired it first, or it was answered meanwhile: at most once.
                Err(ServiceError::Mandate(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(escalated)
    }
}

/// The contest timers: every open contest and its deadline, caught up from the log.
#[derive(Debug, Default)]
pub(super) struct ContestTimers {
    position: u64,
    open: BTreeMap<Uuid, String>,
}

impl ContestTimers {
    async fn catch_up(&mut self, log: &EventLog) -> Result<()> {
        use futures::TryStreamExt;
        let mut events = std::pin::pin!(log.stream_all(self.position + 1, 1_000));
        while let Some(event) = events.try_next().await? {
            self.position = event.position;
            let Some(mandate) = event.stream.strip_prefix("mandate-").and_then(|id| Uuid::parse_str(id).ok())
            else {
                continue;
            };
            match event.event_type.as_str() {
                "MandateContested" => {
                    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap_or_default();
                    if let Some(deadline) = data["deadline"].as_str() {
                        self.open.insert(mandate, deadline.to_owned());
                    }
                }
                "MandateCured" => {
                    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap_or_default();
                    let admits = data["decision"]["violations"].as_array().is_some_and(Vec::is_empty);
                    if admits {
                        self.open.remove(&mandate);
                    }
                }
                "ContestUpheld" | "ContestDismissed" | "ContestEscalated" | "MandateWithdrawn" => {
                    self.open.remove(&mandate);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn due(&self, now: &str) -> Vec<Uuid> {
        self.open
            .iter()
            .filter(|(_, deadline)| deadline.as_str() <= now)
            .map(|(mandate, _)| *mandate)
            .collect()
    }
}
