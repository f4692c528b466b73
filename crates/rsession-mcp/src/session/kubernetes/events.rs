//! Kubernetes Events (`events.k8s.io/v1`) on RSessions for what the frontend
//! does to them on a caller's behalf: `Created`, `Closed`, `Resuming`, each
//! naming the caller, so `kubectl describe rsession` shows who used a session
//! next to the operator's lifecycle Events. Published in the background: a
//! failed Event is logged and never delays or fails the tool call.

use kube::Client;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use rsession_api::RSession;

/// Controller name the Events are reported under.
const REPORTER: &str = "rsession-mcp";

/// The Event recorder of one backend, for RSessions in its namespace.
pub(super) struct Events {
    recorder: Recorder,
    namespace: String,
}

impl Events {
    /// Events reported as `rsession-mcp`, with this pod's name (`POD_NAME`,
    /// else `HOSTNAME`) as the instance when known, on RSessions in `namespace`.
    pub(super) fn new(client: Client, namespace: &str) -> Self {
        let instance = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .ok()
            .filter(|s| !s.is_empty());
        Events {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: REPORTER.into(),
                    instance,
                },
            ),
            namespace: namespace.to_string(),
        }
    }

    /// Publish a Normal Event with `reason` and `note` about `rs` in the
    /// background.
    pub(super) fn publish(&self, rs: &RSession, reason: &str, note: String) {
        let mut reference = rs.object_ref(&());
        // An object the API returned names its namespace; one built here may not.
        reference.namespace = Some(self.namespace.clone());
        let recorder = self.recorder.clone();
        let event = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        let reason = reason.to_string();
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::warn!(error = %e, reason, "could not publish an Event on the RSession");
            }
        });
    }
}
