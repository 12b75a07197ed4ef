//! The front door the service asks: core's [`Admission`] (this process's limits) or
//! [`RedisAdmission`] (limits shared by every replica), and how a [`Config`] builds
//! either.

use std::time::Duration;

use backstop_core::clock::Clock;
use backstop_core::resources::{Sampler, Shortage, SysinfoProbe};
use backstop_core::{Admission, ConfigError, FrontDoor};
use backstop_redis::{LeaseWatch, RedisAdmission, RedisPermit, RedisStore};
use prometheus_client::registry::Registry;

use crate::config::Config;

impl Config {
    /// The admission these settings describe, on `clock`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the bad field.
    pub fn admission<C: Clock + Clone + 'static>(
        &self,
        clock: C,
    ) -> Result<Admission<C>, ConfigError> {
        let admission = Admission::with_clock(self.limits.clone(), clock)?;
        match &self.per_client {
            None => Ok(admission),
            Some(per) => admission
                .with_per_key(per.quota()?, per.max_clients)
                .map_err(|e| e.under("per_client")),
        }
    }

    /// The front door these settings describe, its limits kept in Redis (`store`) under
    /// `name`, shared by every replica using the same store and name, queue places and
    /// job slots leased for `lease`. `per_client`'s `max_clients` bounds the clients with
    /// a live Redis key.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the bad field.
    pub fn redis_admission(
        &self,
        store: &RedisStore,
        name: &str,
        lease: Duration,
    ) -> Result<RedisAdmission, ConfigError> {
        let door = RedisAdmission::with_lease(store, name, self.limits.clone(), lease)?;
        match &self.per_client {
            None => Ok(door),
            Some(per) => door
                .with_per_key(per.quota()?)?
                .with_max_keys(u32::try_from(per.max_clients).unwrap_or(u32::MAX)),
        }
    }
}

/// What the service needs of its front door beyond [`FrontDoor`]: core's [`Admission`]
/// (this process's limits) or [`RedisAdmission`] (limits shared by every replica).
pub trait Door: FrontDoor + 'static {
    /// Starts sampling memory and disk into this replica's resource gate.
    fn spawn_sampler(&self, probe: SysinfoProbe) -> std::io::Result<Sampler>;
    /// Registers the door's metrics in `registry`: core's families, and a shared door's
    /// store families (`backstop_store_*`).
    fn register(&self, registry: &mut Registry);
    /// The resource gate's state name and verdict now.
    fn gate(&self) -> (&'static str, Result<(), Shortage>);
    /// Jobs waiting and running (across every replica for a shared door); `None` when
    /// the store did not answer.
    fn depth(&self) -> impl Future<Output = (Option<u64>, Option<u64>)> + Send;
    /// What a running job checks between its stages: the permit's lease, when the slot
    /// is held in a store that can lose it (`None`: held in this process, never lost).
    fn lease_watch(_permit: &Self::Permit) -> Option<LeaseWatch> {
        None
    }
}

impl<C: Clock + 'static> Door for Admission<C> {
    fn spawn_sampler(&self, probe: SysinfoProbe) -> std::io::Result<Sampler> {
        Admission::spawn_sampler(self, probe)
    }
    fn register(&self, registry: &mut Registry) {
        self.metrics().register(registry);
    }
    fn gate(&self) -> (&'static str, Result<(), Shortage>) {
        let gate = self.resource_gate();
        (gate.state().as_str(), gate.check())
    }
    async fn depth(&self) -> (Option<u64>, Option<u64>) {
        (
            Some(u64::from(self.queue().len())),
            Some(u64::from(self.slots().active())),
        )
    }
}

impl Door for RedisAdmission {
    fn lease_watch(permit: &RedisPermit) -> Option<LeaseWatch> {
        Some(permit.watch())
    }
    fn spawn_sampler(&self, probe: SysinfoProbe) -> std::io::Result<Sampler> {
        RedisAdmission::spawn_sampler(self, probe)
    }
    fn register(&self, registry: &mut Registry) {
        self.metrics().register(registry);
        self.store().register_metrics(registry);
    }
    fn gate(&self) -> (&'static str, Result<(), Shortage>) {
        let gate = self.resource_gate();
        (gate.state().as_str(), gate.check())
    }
    async fn depth(&self) -> (Option<u64>, Option<u64>) {
        (
            self.queue().len().await.ok(),
            self.slots().active().await.ok(),
        )
    }
}
