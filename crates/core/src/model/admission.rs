//! The front door's rules ([`Admission`](crate::Admission)): the stages a request passes,
//! in the one order [`decide`] writes down, over the window, keyed and job models.
//!
//! The order, as documented on `Admission`:
//!
//! 1. an exempt request passes without a stage;
//! 2. with a per-client stage and a client key: the shared window is asked without
//!    charging it (a client is not charged for a request the shared window refuses),
//!    then the client's own window is charged, or the client gets "too many keys";
//! 3. the shared window is charged (429 when full);
//! 4. the queue takes the request at its priority's bound (503 `queue_full` when full);
//!    a request the queue refuses still counts in both windows.
//!
//! In shadow mode every refusal is counted as one and the request goes on to the next
//! stage; the queue then admits past its bound.
//!
//! [`decide`] is written against [`Stages`], so that the same order drives the
//! reference ([`AdmissionModel`]), a checker that watches a log rather than drives a
//! door ([`rate_stages`]), or any other implementation of the stages.

use crate::jobs::{JobBounds, Priority};
use crate::{RateScope, RequestClass};

use super::jobs::JobsModel;
use super::keyed::{KeyedModel, KeyedRefused, Shape};
use super::window::WindowModel;

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided<T, R> {
    /// Exempt: no stage asked.
    Exempt,
    /// Queued, holding a place.
    Admitted(T),
    /// Refused by a stage.
    Refused(R),
}

/// A refusal, as the reference states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// 429: a window was full, with the exact wait.
    RateLimited {
        /// Until the oldest admission that fills the window leaves it.
        wait_ns: u64,
        /// Which window.
        scope: RateScope,
    },
    /// 503 `too_many_keys`: no room for a new client.
    TooManyKeys {
        /// Until the first client window empties: the latest a hint may say.
        latest_ns: u64,
    },
    /// 503 `queue_full`.
    QueueFull,
}

impl From<KeyedRefused> for Refused {
    fn from(refused: KeyedRefused) -> Self {
        match refused {
            KeyedRefused::RateLimited { wait_ns } => Refused::RateLimited {
                wait_ns,
                scope: RateScope::PerClient,
            },
            KeyedRefused::TooManyKeys { latest_ns } => Refused::TooManyKeys { latest_ns },
        }
    }
}

/// The stages of one request, each asked at most once by [`decide`].
pub trait Stages {
    /// What a place in the queue is held by.
    type Ticket;
    /// What a stage says when it refuses.
    type Refusal: Copy;

    /// Whether this request goes through a per-client stage (one is configured and the
    /// request names its client).
    fn has_client_stage(&self) -> bool;
    /// Whether the shared window would take one more, without charging it.
    fn peek_shared(&mut self) -> Result<(), Self::Refusal>;
    /// The client's own window, charged when it passes.
    fn charge_client(&mut self) -> Result<(), Self::Refusal>;
    /// The shared window, charged when it passes.
    fn charge_shared(&mut self) -> Result<(), Self::Refusal>;
    /// A place in the queue at `priority`'s bound.
    fn enter_queue(&mut self, priority: Priority) -> Result<Self::Ticket, Self::Refusal>;
    /// In shadow mode, a place past the bound (`None`: not even that).
    fn enter_queue_in_shadow(&mut self) -> Option<Self::Ticket>;
    /// In shadow mode, a refusal that was counted and not given.
    fn shadowed(&mut self, refusal: Self::Refusal);
}

/// The stage order: the one place it is written.
pub fn decide<S: Stages + ?Sized>(
    stages: &mut S,
    class: RequestClass,
    shadow: bool,
) -> Decided<S::Ticket, S::Refusal> {
    let priority = match class {
        RequestClass::Exempt => return Decided::Exempt,
        RequestClass::Normal => Priority::Normal,
        RequestClass::Critical => Priority::Critical,
    };
    // The shared window's refusal is counted once in shadow mode, asked twice or not.
    let mut shared_shadowed = false;
    if stages.has_client_stage() {
        if let Err(refusal) = stages.peek_shared() {
            if !shadow {
                return Decided::Refused(refusal);
            }
            stages.shadowed(refusal);
            shared_shadowed = true;
        }
        if let Err(refusal) = stages.charge_client() {
            if !shadow {
                return Decided::Refused(refusal);
            }
            stages.shadowed(refusal);
        }
    }
    if let Err(refusal) = stages.charge_shared() {
        if !shadow {
            return Decided::Refused(refusal);
        }
        if !shared_shadowed {
            stages.shadowed(refusal);
        }
    }
    match stages.enter_queue(priority) {
        Ok(ticket) => Decided::Admitted(ticket),
        Err(refusal) if shadow => {
            stages.shadowed(refusal);
            match stages.enter_queue_in_shadow() {
                Some(ticket) => Decided::Admitted(ticket),
                None => Decided::Refused(refusal),
            }
        }
        Err(refusal) => Decided::Refused(refusal),
    }
}

/// What the rate stages would answer at `now_ns`, in their order, charging nothing: for
/// checkers that watch a log and record what passed themselves. `client` is the
/// per-client windows and this request's key, when the request goes through that stage.
///
/// # Errors
///
/// The first rate stage that would refuse.
///
/// ```
/// use backstop_core::RateScope;
/// use backstop_core::model::{KeyedModel, Refused, WindowModel, rate_stages};
///
/// let mut shared = WindowModel::new(2, 10);
/// let mut clients = KeyedModel::new((1, 10), usize::MAX);
/// shared.record(0).unwrap();
/// clients.record(&7, 0).unwrap();
/// // Room in the shared window, none in client 7's:
/// let per_client = Refused::RateLimited { wait_ns: 7, scope: RateScope::PerClient };
/// assert_eq!(rate_stages(&shared, Some((&clients, &7)), 3), Err(per_client));
/// assert_eq!(rate_stages(&shared, Some((&clients, &8)), 3), Ok(()));
/// ```
pub fn rate_stages<K: Ord + Clone>(
    shared: &WindowModel,
    client: Option<(&KeyedModel<K>, &K)>,
    now_ns: u64,
) -> Result<(), Refused> {
    let mut watch = Watch {
        shared,
        client,
        now_ns,
    };
    match decide(&mut watch, RequestClass::Normal, false) {
        Decided::Refused(refused) => Err(refused),
        Decided::Admitted(()) | Decided::Exempt => Ok(()),
    }
}

/// The rate stages as a watcher sees them: asked, never charged; the queue is not its
/// business.
struct Watch<'a, K> {
    shared: &'a WindowModel,
    client: Option<(&'a KeyedModel<K>, &'a K)>,
    now_ns: u64,
}

impl<K: Ord + Clone> Stages for Watch<'_, K> {
    type Ticket = ();
    type Refusal = Refused;

    fn has_client_stage(&self) -> bool {
        self.client.is_some()
    }

    fn peek_shared(&mut self) -> Result<(), Refused> {
        shared_verdict(self.shared.check(self.now_ns))
    }

    fn charge_client(&mut self) -> Result<(), Refused> {
        match self.client {
            Some((clients, key)) => clients.check(key, self.now_ns).map_err(Refused::from),
            None => Ok(()),
        }
    }

    fn charge_shared(&mut self) -> Result<(), Refused> {
        self.peek_shared()
    }

    fn enter_queue(&mut self, _: Priority) -> Result<(), Refused> {
        Ok(())
    }

    fn enter_queue_in_shadow(&mut self) -> Option<()> {
        Some(())
    }

    fn shadowed(&mut self, _: Refused) {}
}

fn shared_verdict(verdict: Result<(), u64>) -> Result<(), Refused> {
    verdict.map_err(|wait_ns| Refused::RateLimited {
        wait_ns,
        scope: RateScope::Global,
    })
}

/// What a front door's counters must say: each request's final outcome once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Admitted into the queue (in shadow mode, past any refusal).
    pub admitted: u64,
    /// Exempt.
    pub exempt: u64,
    /// 429, either window.
    pub rate_limited: u64,
    /// 503 `queue_full`.
    pub queue_full: u64,
    /// 503 `too_many_keys`.
    pub too_many_keys: u64,
}

/// The front door's reference: the shared window, the per-client windows when
/// configured, the job counters and what the counters must say.
///
/// ```
/// use backstop_core::jobs::JobBounds;
/// use backstop_core::model::{AdmissionModel, Decided, Refused};
/// use backstop_core::{RateScope, RequestClass};
///
/// let bounds = JobBounds { max_queue: 1, critical_reserve: 0, max_jobs: 1 };
/// let mut door: AdmissionModel<&str> = AdmissionModel::new((2, 10), bounds);
/// assert_eq!(door.admit(RequestClass::Normal, None, 0), Decided::Admitted(()));
/// // The queue is full, but the request still counts in the window...
/// assert_eq!(door.admit(RequestClass::Normal, None, 1), Decided::Refused(Refused::QueueFull));
/// // ...so the third is refused by the window, until the first leaves it.
/// let refused = Refused::RateLimited { wait_ns: 8, scope: RateScope::Global };
/// assert_eq!(door.admit(RequestClass::Normal, None, 2), Decided::Refused(refused));
/// assert_eq!(door.counts().rate_limited, 1);
/// ```
#[derive(Debug, Clone)]
pub struct AdmissionModel<K> {
    shared: WindowModel,
    clients: Option<KeyedModel<K>>,
    jobs: JobsModel,
    shadow: bool,
    counts: Counts,
}

impl<K: Ord + Clone> AdmissionModel<K> {
    /// A door with a shared window of `shape` and job counters of `bounds`, no
    /// per-client stage, enforcing.
    pub fn new(shape: Shape, bounds: JobBounds) -> Self {
        AdmissionModel {
            shared: WindowModel::new(shape.0, shape.1),
            clients: None,
            jobs: JobsModel::new(bounds),
            shadow: false,
            counts: Counts::default(),
        }
    }

    /// With a per-client stage of these windows.
    pub fn with_clients(mut self, clients: KeyedModel<K>) -> Self {
        self.clients = Some(clients);
        self
    }

    /// Shadow mode on or off.
    pub fn set_shadow(&mut self, shadow: bool) {
        self.shadow = shadow;
    }

    /// Whether refusals are only counted.
    pub fn shadow(&self) -> bool {
        self.shadow
    }

    /// The shared window.
    pub fn shared(&self) -> &WindowModel {
        &self.shared
    }

    /// The per-client windows, when configured.
    pub fn clients(&self) -> Option<&KeyedModel<K>> {
        self.clients.as_ref()
    }

    /// The job counters.
    pub fn jobs(&self) -> &JobsModel {
        &self.jobs
    }

    /// The job counters, to start, finish or drop jobs.
    pub fn jobs_mut(&mut self) -> &mut JobsModel {
        &mut self.jobs
    }

    /// What the counters must say.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// A request of `class` from client `key` (if it names one) at `now_ns`, through
    /// [`decide`], counted.
    pub fn admit(
        &mut self,
        class: RequestClass,
        key: Option<&K>,
        now_ns: u64,
    ) -> Decided<(), Refused> {
        let shadow = self.shadow;
        let decided = decide(
            &mut Step {
                door: self,
                key,
                now_ns,
            },
            class,
            shadow,
        );
        let counts = &mut self.counts;
        match decided {
            Decided::Exempt => counts.exempt += 1,
            Decided::Admitted(()) => counts.admitted += 1,
            Decided::Refused(Refused::RateLimited { .. }) => counts.rate_limited += 1,
            Decided::Refused(Refused::TooManyKeys { .. }) => counts.too_many_keys += 1,
            Decided::Refused(Refused::QueueFull) => counts.queue_full += 1,
        }
        decided
    }

    /// New limits, as `Admission::reconfigure` takes them: `false` (and nothing changed)
    /// when the bounds are invalid. The shared window changes in place while its limit
    /// fits its capacity, else into a larger window built from what it remembers.
    pub fn reconfigure(&mut self, shape: Shape, bounds: JobBounds, shadow: bool) -> bool {
        if !self.jobs.set_bounds(bounds) {
            return false;
        }
        let (limit, window_ns) = shape;
        if !self.shared.reconfigure(limit, window_ns) {
            self.shared = self.shared.reconfigured(limit, window_ns);
        }
        self.shadow = shadow;
        true
    }
}

/// One request's stages over the reference's state.
struct Step<'a, 'k, K> {
    door: &'a mut AdmissionModel<K>,
    key: Option<&'k K>,
    now_ns: u64,
}

impl<K: Ord + Clone> Stages for Step<'_, '_, K> {
    type Ticket = ();
    type Refusal = Refused;

    fn has_client_stage(&self) -> bool {
        self.door.clients.is_some() && self.key.is_some()
    }

    fn peek_shared(&mut self) -> Result<(), Refused> {
        shared_verdict(self.door.shared.check(self.now_ns))
    }

    fn charge_client(&mut self) -> Result<(), Refused> {
        match (&mut self.door.clients, self.key) {
            (Some(clients), Some(key)) => {
                clients.try_acquire(key, self.now_ns).map_err(Refused::from)
            }
            _ => Ok(()),
        }
    }

    fn charge_shared(&mut self) -> Result<(), Refused> {
        shared_verdict(self.door.shared.try_acquire(self.now_ns))
    }

    fn enter_queue(&mut self, priority: Priority) -> Result<(), Refused> {
        if self.door.jobs.try_enter(priority) {
            Ok(())
        } else {
            Err(Refused::QueueFull)
        }
    }

    fn enter_queue_in_shadow(&mut self) -> Option<()> {
        self.door.jobs.enter_unbounded();
        Some(())
    }

    fn shadowed(&mut self, _: Refused) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(max_queue: u32) -> JobBounds {
        JobBounds {
            max_queue,
            critical_reserve: 0,
            max_jobs: 1,
        }
    }

    #[test]
    fn a_clients_refusal_does_not_charge_the_shared_window() {
        let clients = KeyedModel::new((1, 10), 4);
        let mut door = AdmissionModel::new((2, 10), bounds(8)).with_clients(clients);
        let normal = RequestClass::Normal;
        assert_eq!(door.admit(normal, Some(&7), 0), Decided::Admitted(()));
        let own = Refused::RateLimited {
            wait_ns: 9,
            scope: RateScope::PerClient,
        };
        assert_eq!(door.admit(normal, Some(&7), 1), Decided::Refused(own));
        // The shared window's second place is still there for client 8.
        assert_eq!(door.admit(normal, Some(&8), 2), Decided::Admitted(()));
        let shared = Refused::RateLimited {
            wait_ns: 7,
            scope: RateScope::Global,
        };
        // Full now: asked first, so client 9's window is not charged either.
        assert_eq!(door.admit(normal, Some(&9), 3), Decided::Refused(shared));
        assert_eq!(door.clients().map(|c| c.window(&9).is_some()), Some(false));
    }

    #[test]
    fn shadow_counts_nothing_refused_and_admits_past_the_bound() {
        let mut door: AdmissionModel<u8> = AdmissionModel::new((1, 10), bounds(1));
        door.set_shadow(true);
        for t in 0..3 {
            assert_eq!(
                door.admit(RequestClass::Normal, None, t),
                Decided::Admitted(())
            );
        }
        assert_eq!(door.jobs().waiting(), 3);
        assert_eq!(door.counts().rate_limited, 0);
        assert_eq!(door.admit(RequestClass::Exempt, None, 3), Decided::Exempt);
    }

    #[test]
    fn a_reconfiguration_with_bad_bounds_changes_nothing() {
        let mut door: AdmissionModel<u8> = AdmissionModel::new((1, 10), bounds(2));
        assert!(!door.reconfigure((4, 10), bounds(0), true));
        assert_eq!((door.shared().limit(), door.shadow()), (1, false));
        assert!(door.reconfigure((4, 10), bounds(2), false));
        assert_eq!(door.shared().limit(), 4);
    }
}
