//! Leader election on a `coordination.k8s.io/v1` Lease, so that two replicas never both write.
//!
//! ```text
//!  acquire: no lease / expired / ours ──replace with our resourceVersion──▶ leader   (409 = someone was faster)
//!  hold:    renew every `renew_every`; a conflict or no renewal within the lease duration = lost ──▶ stop
//! ```

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use tracing::{info, warn};

pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    renew_every: Duration,
}

impl LeaderElection {
    pub fn new(api: Api<Lease>, name: &str, identity: &str) -> Self {
        Self {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }

    /// Wait until this replica holds the lease.
    pub async fn acquire(&self) {
        let mut said = false;
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "acquired leadership");
                    return;
                }
                Ok(false) if !said => {
                    info!(lease = %self.name, "another replica is the leader; standing by");
                    said = true;
                }
                Ok(false) => {}
                Err(err) => warn!(error = %err, "failed to read or write the leader lease"),
            }
            tokio::time::sleep(self.renew_every).await;
        }
    }

    /// Keep renewing; returns when leadership is lost.
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.renew_every).await;
            match self.try_acquire().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    warn!(lease = %self.name, "another replica took the lease");
                    return;
                }
                Err(err) if last_renewal.elapsed() < self.lease_duration => {
                    warn!(error = %err, "failed to renew the leader lease; retrying");
                }
                Err(err) => {
                    warn!(error = %err, "could not renew the leader lease within its duration");
                    return;
                }
            }
        }
    }

    /// Give the lease up so that a standby takes over at once instead of after it expires.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(self.identity.as_str())
        {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
            }
            if let Err(err) = self.api.replace(&self.name, &PostParams::default(), &lease).await {
                warn!(error = %err, "failed to release the leader lease");
            }
        }
    }

    async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let seconds = i32::try_from(self.lease_duration.as_secs()).unwrap_or(15);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return conflict_is_false(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
            let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(seconds)));
            renewed.0.checked_add(duration).is_ok_and(|until| until < now)
        });
        if !(ours || spec.holder_identity.is_none() || expired) {
            return Ok(false);
        }
        if !ours {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(seconds);
        // `replace` carries the resourceVersion we read: if anyone wrote in between, this is a 409, not a split brain.
        conflict_is_false(self.api.replace(&self.name, &PostParams::default(), &lease).await)
    }
}

fn conflict_is_false(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}
