//! Leader election with a `coordination.k8s.io/v1` Lease (kube 5 ships no helper for it).
//!
//! Protocol (the same as client-go's leaderelection, simplified): the holder renews
//! `spec.renewTime` every `renewIntervalSecs`; another replica takes the Lease over only when
//! `renewTime + leaseDurationSeconds` lies in the past. Every write is an update carrying the
//! read `resourceVersion`, so two replicas racing for the Lease cannot both win: the loser gets
//! `409 Conflict` and stays a follower. Clocks of the replicas are assumed to be roughly in sync
//! (well under the lease duration), as in client-go.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tracing::info;

/// One replica's view of a Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    lease_name: String,
    identity: String,
    lease_duration: Duration,
}

/// Outcome of one [`LeaderElector::try_acquire_or_renew`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// This replica holds the Lease until at least `now + lease duration`.
    Leader,
    /// Another replica holds a live Lease (or won a race).
    Follower,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaderElector {
    /// An elector for Lease `lease_name` in `namespace`, identifying this replica as `identity`.
    pub fn new(
        client: Client,
        namespace: &str,
        lease_name: &str,
        identity: &str,
        lease_duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration,
        }
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// Creates, renews or takes over the Lease if possible.
    ///
    /// # Errors
    /// Any apiserver error other than the `409 Conflict` of a lost race.
    pub async fn try_acquire_or_renew(&self) -> Result<LeaseState, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lease_name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.lease_seconds()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    info!(identity = %self.identity, "created the leader Lease");
                    Ok(LeaseState::Leader)
                }
                Err(e) if is_conflict(&e) => Ok(LeaseState::Follower),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        if !ours {
            let duration = spec
                .lease_duration_seconds
                .map_or(self.lease_duration, |s| {
                    Duration::from_secs(u64::try_from(s).unwrap_or(0))
                });
            let expired = match &spec.renew_time {
                Some(t) => {
                    now.duration_since(t.0)
                        > jiff::SignedDuration::try_from(duration)
                            .unwrap_or(jiff::SignedDuration::MAX)
                }
                None => true,
            };
            if spec.holder_identity.is_some() && !expired {
                return Ok(LeaseState::Follower);
            }
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(self.lease_seconds());
        match self
            .api
            .replace(&self.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                if !ours {
                    info!(identity = %self.identity, "took over the leader Lease");
                }
                Ok(LeaseState::Leader)
            }
            Err(e) if is_conflict(&e) => Ok(LeaseState::Follower),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (clears the holder) if this replica holds it, so a follower can take
    /// over at once instead of waiting for expiry.
    ///
    /// # Errors
    /// Apiserver errors other than NotFound and Conflict.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.lease_name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        match self
            .api
            .replace(&self.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
