//! The one type the control plane and the data path share: the current [`Route`].
//!
//! The control plane calls [`RouteTable::publish`]; the data path calls [`RouteTable::load`]
//! once per client connection (an `ArcSwap` load: no lock, no I/O). Each route carries a drain
//! signal: `publish` stores the new route first and then fires the old route's signal, so every
//! session bound to the old master stops forwarding client bytes to it, while new connections
//! already get the new route.
//!
//! A route can also be **paused** (its master is suspect: slow, or the old master of a failover
//! that is not confirmed yet): its sessions stay open but move no bytes either way, and new
//! clients wait. A paused route is resumed (nothing was lost, nothing closed) or drained with
//! [`DrainMode::Immediate`], so no reply the master sent while it was suspect reaches a client
//! unless the master was confirmed healthy first.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Where client connections go now.
#[derive(Debug)]
pub struct Route {
    /// The table's epoch when this route was published (every publish, withdrawals included,
    /// increments it), so logs and metrics can tell two routes to the same backend apart. A
    /// kept route made current again keeps its epoch.
    pub epoch: u64,
    /// The backend as configured (`host:port`), for logs and metric labels.
    pub backend: Arc<str>,
    /// The address the backend resolved to at the check that elected it.
    pub addr: SocketAddr,
    /// Fired when this route is replaced or withdrawn.
    drain: CancellationToken,
    /// How sessions on this route end once `drain` fires (a [`DrainMode`] as u8); written before
    /// the token fires.
    mode: AtomicU8,
    /// Whether sessions must hold their bytes (read on every forward: an atomic, no lock).
    paused: AtomicBool,
    /// Wakes sessions waiting in [`Route::wait_open`] when the pause ends.
    gate: watch::Sender<bool>,
}

/// How sessions bound to a replaced route end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DrainMode {
    /// Stop forwarding client bytes; deliver replies already on their way back; close within the
    /// drain timeout. Used when the old master still answers.
    Graceful = 0,
    /// Close at once: the old master is unreachable or already a replica, so nothing useful can
    /// come back from it.
    Immediate = 1,
    /// Only with a withdrawal: the sessions stay, as over a direct connection to that server;
    /// only new clients wait. Used when the route's master answers as a replica and no other
    /// master takes the route (rule 13). The route is *kept*: publishing the same backend and
    /// address again makes it current again (its sessions never noticed); anything else
    /// drains it at once.
    Keep = 2,
}

impl Route {
    /// Resolves when this route has been replaced or withdrawn.
    pub async fn drained(&self) {
        self.drain.cancelled().await
    }

    /// Whether this route has been replaced or withdrawn. Checked before every forward to the
    /// backend, so not a single client byte goes to a demoted master after `publish` returns.
    pub fn is_drained(&self) -> bool {
        self.drain.is_cancelled()
    }

    /// A future that resolves when this route drains, for a session's own task.
    ///
    /// Polling a cancellation future takes the lock of the token's waiter list, and every
    /// session on a route shares that token: polled on every wake of every session, it would be
    /// a process-wide lock on the data path. This future registers its waker once (one lock per
    /// session) and afterwards only reads an atomic flag, relying on the session's task keeping
    /// the same waker, which tokio guarantees for a task.
    pub fn drain_signal(&self) -> DrainSignal {
        DrainSignal::new(self.drain.clone())
    }

    /// Whether the route is paused (see the module doc).
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Waits until the route is not paused, or has drained. Costs nothing when it is open.
    pub async fn wait_open(&self) {
        if !self.is_paused() {
            return;
        }
        let mut rx = self.gate.subscribe();
        loop {
            if !self.is_paused() || self.is_drained() {
                return;
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = self.drain.cancelled() => return,
            }
        }
    }

    fn set_paused(&self, paused: bool) -> bool {
        let was = self.paused.swap(paused, Ordering::AcqRel);
        self.gate.send_replace(paused);
        was != paused
    }

    pub fn drain_mode(&self) -> DrainMode {
        if self.mode.load(Ordering::Acquire) == DrainMode::Immediate as u8 {
            DrainMode::Immediate
        } else {
            DrainMode::Graceful
        }
    }
}

/// Drains a route that is no longer current with `mode`.
fn end(route: &Route, mode: DrainMode) {
    let mode = if mode == DrainMode::Keep {
        DrainMode::Immediate
    } else {
        mode
    };
    route.mode.store(mode as u8, Ordering::Release);
    if mode == DrainMode::Graceful {
        // A graceful drain delivers replies on their way: only a master confirmed healthy gets
        // one, so whatever it sent may now pass.
        route.set_paused(false);
    }
    route.drain.cancel();
}

/// See [`Route::drain_signal`].
pub struct DrainSignal {
    token: CancellationToken,
    wait: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    registered: bool,
}

impl DrainSignal {
    /// The same cheap wait on any token shared by many sessions (the data path's stop token).
    pub fn new(token: CancellationToken) -> DrainSignal {
        DrainSignal {
            wait: Box::pin(token.clone().cancelled_owned()),
            token,
            registered: false,
        }
    }
}

impl std::fmt::Debug for DrainSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrainSignal")
            .field("drained", &self.token.is_cancelled())
            .finish()
    }
}

impl std::future::Future for DrainSignal {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.token.is_cancelled() {
            return std::task::Poll::Ready(());
        }
        if !self.registered {
            self.registered = true;
            return self.wait.as_mut().poll(cx);
        }
        std::task::Poll::Pending
    }
}

/// The published route, and a way to wait for one.
pub struct RouteTable {
    current: ArcSwapOption<Route>,
    /// A route withdrawn with [`DrainMode::Keep`]: not current, not drained.
    kept: Mutex<Option<Arc<Route>>>,
    /// Serialises publishers (the election loop, shutdown) and holds the last epoch.
    publish_lock: Mutex<u64>,
    /// Ticks on every publish, so connections waiting for a master wake up at once.
    changed: watch::Sender<u64>,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable {
            current: ArcSwapOption::empty(),
            kept: Mutex::new(None),
            publish_lock: Mutex::new(0),
            changed: watch::Sender::new(0),
        }
    }
}

impl RouteTable {
    /// The current route, if any. Cheap: called once per accepted connection.
    pub fn load(&self) -> Option<Arc<Route>> {
        self.current.load_full()
    }

    /// Makes `target` the route (or withdraws it with `None`), then drains the previous route
    /// with `mode`. Returns whether anything changed: publishing the same backend and address
    /// again is a no-op, so sessions are never drained for nothing.
    ///
    /// A route withdrawn with [`DrainMode::Keep`] is kept instead of drained. The next publish
    /// of the same backend and address makes it current again; any other publish, or a
    /// withdrawal that does not keep, drains it at once.
    pub fn publish(&self, target: Option<(Arc<str>, SocketAddr)>, mode: DrainMode) -> bool {
        let mut epoch = self.publish_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.current.load_full();
        let same_as = |r: &Route| {
            target
                .as_ref()
                .is_some_and(|(b, a)| r.backend == *b && r.addr == *a)
        };
        let same = match &old {
            None => target.is_none(),
            Some(o) => same_as(o),
        };
        if same {
            if target.is_none() && mode != DrainMode::Keep {
                if let Some(k) = kept.take() {
                    end(&k, DrainMode::Immediate);
                    return true;
                }
            }
            return false;
        }
        *epoch += 1;
        let new = match (kept.take(), &target) {
            (Some(k), _) if same_as(&k) => Some(k),
            (k, target) => {
                if let Some(k) = k {
                    end(&k, DrainMode::Immediate);
                }
                target.as_ref().map(|(backend, addr)| {
                    Arc::new(Route {
                        epoch: *epoch,
                        backend: backend.clone(),
                        addr: *addr,
                        drain: CancellationToken::new(),
                        mode: AtomicU8::new(DrainMode::Graceful as u8),
                        paused: AtomicBool::new(false),
                        gate: watch::Sender::new(false),
                    })
                })
            }
        };
        self.current.store(new);
        if let Some(old) = old {
            if mode == DrainMode::Keep && target.is_none() {
                *kept = Some(old);
            } else {
                end(&old, mode);
            }
        }
        self.changed.send_replace(*epoch);
        true
    }

    /// Pauses (`true`) or resumes the current route's sessions; returns whether that changed
    /// anything.
    pub fn set_paused(&self, paused: bool) -> bool {
        let _serial = self.publish_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.current
            .load_full()
            .is_some_and(|r| r.set_paused(paused))
    }

    /// The current route, waiting up to `timeout` for one to be published.
    pub async fn wait_for_route(&self, timeout: Duration) -> Option<Arc<Route>> {
        self.wait_for_route_except(None, timeout).await
    }

    /// Like [`wait_for_route`](Self::wait_for_route), but a route with epoch `not` (one whose
    /// master just refused a connection) does not count: waits for the next publish.
    pub async fn wait_for_route_except(
        &self,
        not: Option<u64>,
        timeout: Duration,
    ) -> Option<Arc<Route>> {
        let mut rx = self.changed.subscribe();
        let wait = async {
            loop {
                if let Some(r) = self.load().filter(|r| Some(r.epoch) != not) {
                    return Some(r);
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// The epoch of the last publish (0 before the first).
    pub fn epoch(&self) -> u64 {
        *self.changed.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, port: u16) -> Option<(Arc<str>, SocketAddr)> {
        Some((Arc::from(name), SocketAddr::from(([127, 0, 0, 1], port))))
    }

    #[test]
    fn publish_swaps_then_drains_the_old_route() {
        let t = RouteTable::default();
        assert!(t.load().is_none());
        assert!(t.publish(target("a", 1), DrainMode::Graceful));
        let a = t.load().unwrap();
        assert_eq!(a.epoch, 1);
        assert!(!t.publish(target("a", 1), DrainMode::Graceful), "no-op");
        assert!(!a.is_drained());
        assert!(t.publish(target("b", 2), DrainMode::Immediate));
        assert!(a.is_drained());
        assert_eq!(a.drain_mode(), DrainMode::Immediate);
        let b = t.load().unwrap();
        assert_eq!((b.epoch, &*b.backend), (2, "b"));
        assert!(t.publish(None, DrainMode::Graceful));
        assert!(b.is_drained() && t.load().is_none());
        assert_eq!(t.epoch(), 3);
    }

    #[test]
    fn a_kept_route_comes_back_or_drains_at_once() {
        let t = RouteTable::default();
        t.publish(target("a", 1), DrainMode::Graceful);
        let a = t.load().unwrap();
        assert!(t.publish(None, DrainMode::Keep));
        assert!(t.load().is_none(), "new clients wait");
        assert!(!a.is_drained(), "its sessions stay");
        assert!(t.publish(target("a", 1), DrainMode::Immediate));
        assert!(
            Arc::ptr_eq(&t.load().unwrap(), &a),
            "the same route, current again"
        );
        assert!(!a.is_drained());

        // Kept, then another master: drained at once.
        t.publish(None, DrainMode::Keep);
        assert!(t.publish(target("b", 2), DrainMode::Graceful));
        assert!(a.is_drained());
        assert_eq!(a.drain_mode(), DrainMode::Immediate);

        // Kept, then withdrawn for good: drained at once.
        let b = t.load().unwrap();
        t.publish(None, DrainMode::Keep);
        assert!(!t.publish(None, DrainMode::Keep), "nothing more to keep");
        assert!(!b.is_drained());
        assert!(t.publish(None, DrainMode::Immediate));
        assert!(b.is_drained() && b.drain_mode() == DrainMode::Immediate);
        assert!(!t.publish(None, DrainMode::Immediate), "no-op");

        // Kept, then the same backend at another address: drained, a new route.
        t.publish(target("c", 3), DrainMode::Graceful);
        let c = t.load().unwrap();
        t.publish(None, DrainMode::Keep);
        t.publish(target("c", 4), DrainMode::Graceful);
        assert!(c.is_drained() && !Arc::ptr_eq(&t.load().unwrap(), &c));
    }

    #[tokio::test]
    async fn drain_signal_wakes_its_task_once_registered() {
        let t = Arc::new(RouteTable::default());
        t.publish(target("a", 1), DrainMode::Graceful);
        let r = t.load().unwrap();
        let waiter = tokio::spawn(async move {
            let mut sig = std::pin::pin!(r.drain_signal());
            // Polled many times, as a session's select polls it on every wake.
            for _ in 0..3 {
                tokio::select! {
                    biased;
                    _ = &mut sig => return true,
                    _ = tokio::task::yield_now() => {}
                }
            }
            sig.await;
            true
        });
        tokio::task::yield_now().await;
        t.publish(target("b", 2), DrainMode::Graceful);
        assert!(tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap());
    }

    #[tokio::test]
    async fn paused_route_holds_waiters_until_resumed_or_drained() {
        let t = Arc::new(RouteTable::default());
        t.publish(target("a", 1), DrainMode::Graceful);
        let a = t.load().unwrap();
        a.wait_open().await; // open: returns at once
        assert!(t.set_paused(true) && a.is_paused());
        assert!(!t.set_paused(true), "no change");
        let r = a.clone();
        let waiter = tokio::spawn(async move { r.wait_open().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        t.set_paused(false);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        t.set_paused(true);
        let r = a.clone();
        let waiter = tokio::spawn(async move { r.wait_open().await });
        t.publish(target("b", 2), DrainMode::Immediate);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(
            a.is_drained() && a.is_paused(),
            "drained while paused: never resumed"
        );
        assert!(!t.load().unwrap().is_paused(), "a new route starts open");
    }

    #[tokio::test]
    async fn waiters_wake_on_publish() {
        let t = Arc::new(RouteTable::default());
        let t2 = t.clone();
        let waiter = tokio::spawn(async move { t2.wait_for_route(Duration::from_secs(10)).await });
        tokio::task::yield_now().await;
        t.publish(target("a", 1), DrainMode::Graceful);
        let got = waiter.await.unwrap().expect("woken with the route");
        assert_eq!(&*got.backend, "a");
        assert!(t.wait_for_route(Duration::from_millis(1)).await.is_some());
        t.publish(None, DrainMode::Graceful);
        assert!(t.wait_for_route(Duration::from_millis(20)).await.is_none());
    }
}
