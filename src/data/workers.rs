//! Data-path worker threads: each runs a single-threaded runtime that owns the sessions handed
//! to it, from connect to close.
//!
//! Why not one work-stealing runtime: a session is one task, so stealing cannot spread one
//! session over cores anyway, and it costs on every request. A reply that wakes a session parked
//! on another worker's queue goes through a futex and an eventfd write: measured on loopback
//! Redis traffic (`perf stat`, 200k unpipelined SETs), about 0.13 futex call and 0.03 eventfd
//! write per request, against almost none here (`docs/benchmarks/README.md` has the
//! interleaved comparison of the two runtimes). Here a session's sockets,
//! timers and wake-ups stay on the one thread that serves it (as HAProxy's threads do), and the
//! only cross-thread step is the hand-off of a new client by the accept loop.
//!
//! The accept loop hands each client to a worker, as `placement` says. With `host` (the
//! default): the one that already runs sessions from the same client host, else the one with
//! the fewest open sessions. Keeping a host's connections on one thread keeps the order of what
//! it sends on several connections at once: a client that writes a command on one connection,
//! then another command on a second, has them reach the master in that order, as over a direct
//! connection (Redis's own test suite relies on it, so do producers and blocked consumers of one
//! application). Hosts spread over the threads, one host's sessions do not. With `connection`:
//! always the one with the fewest open sessions, so one busy host uses every thread, and two
//! commands it sends at the same instant on two connections may be forwarded in either order
//! (two threads race, as HAProxy's do). A client's socket moves from the accepting runtime's
//! reactor to the worker's: one `epoll_ctl` each way, once per connection.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

use crate::config::Placement;

/// One worker thread and what the accept loop needs to reach it.
struct Worker {
    /// Spawns onto the worker's runtime from any thread.
    handle: Handle,
    /// Sessions open on this worker, for the least-loaded choice.
    open: Arc<AtomicUsize>,
    /// Ends the worker's runtime; dropping it does too.
    stop: Mutex<Option<oneshot::Sender<()>>>,
    /// Fires once the worker's runtime (and every session left on it) has been dropped.
    done: Mutex<Option<oneshot::Receiver<()>>>,
}

/// Client hosts with sessions open: the worker their sessions run on and how many there are.
/// An entry lives exactly as long as its host has a session open.
type Hosts = Arc<Mutex<HashMap<IpAddr, (usize, usize)>>>;

/// The data-path workers. With none, sessions run on the caller's runtime.
pub struct Workers {
    workers: Vec<Worker>,
    placement: Placement,
    hosts: Hosts,
}

/// Gives back a session's place however the session ends: its worker's open count and its
/// host's entry.
struct OpenGuard {
    open: Arc<AtomicUsize>,
    host: Option<(IpAddr, Hosts)>,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        if let Some((ip, hosts)) = &self.host {
            let mut hosts = hosts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = hosts.get_mut(ip) {
                e.1 -= 1;
                if e.1 == 0 {
                    hosts.remove(ip);
                }
            }
        }
    }
}

impl Workers {
    /// No worker threads: sessions run where the accept loop runs (`threads = 1`).
    pub fn none() -> Workers {
        Workers {
            workers: Vec::new(),
            placement: Placement::Host,
            hosts: Hosts::default(),
        }
    }

    /// Starts `n` worker threads, each with its own single-threaded runtime, placing sessions
    /// on them as `placement` says. Each runtime is
    /// built on its own thread, so a thread or runtime the system refuses (a process limit, a
    /// memory limit) is an error here, never a runtime dropped where it cannot be; the workers
    /// already started end when the returned error drops them.
    pub fn start(n: usize, placement: Placement) -> std::io::Result<Workers> {
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let (done_tx, done_rx) = oneshot::channel::<()>();
            let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
            let failed = |what: &str, e: std::io::Error| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "cannot start data-path thread {} of {n}: {what}: {e}",
                        i + 1
                    ),
                )
            };
            std::thread::Builder::new()
                .name(format!("data-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(rt.handle().clone()));
                    // Runs the sessions spawned onto the handle until told to stop (or the
                    // sender is dropped), then drops them with the runtime.
                    let _ = rt.block_on(stop_rx);
                    drop(rt);
                    let _ = done_tx.send(());
                })
                .map_err(|e| failed("the system refused a new thread", e))?;
            let handle = match ready_rx.recv() {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => return Err(failed("cannot build its runtime", e)),
                Err(_) => {
                    return Err(failed(
                        "it ended before starting",
                        std::io::Error::other("no runtime"),
                    ))
                }
            };
            workers.push(Worker {
                handle,
                open: Arc::new(AtomicUsize::new(0)),
                stop: Mutex::new(Some(stop_tx)),
                done: Mutex::new(Some(done_rx)),
            });
        }
        Ok(Workers {
            workers,
            placement,
            hosts: Hosts::default(),
        })
    }

    /// Number of worker threads (0: sessions run on the caller's runtime).
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Runs `session` on the worker `placement` chooses (on the current runtime when there are
    /// none), tracked by `tracker`. `session` receives the
    /// client socket re-registered on the runtime it runs on.
    pub fn spawn<F, Fut>(&self, tracker: &TaskTracker, client: tokio::net::TcpStream, session: F)
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.workers.is_empty() {
            tracker.spawn(session(client));
            return;
        }
        // Leave this reactor now; join the worker's inside its runtime.
        let std_client = match client.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "cannot hand the client to a worker; closing it");
                return;
            }
        };
        let host = match self.placement {
            Placement::Host => std_client.peer_addr().ok().map(|a| a.ip()),
            Placement::Connection => None,
        };
        let (index, host) = self.place(host);
        let w = &self.workers[index];
        let guard = OpenGuard {
            open: w.open.clone(),
            host,
        };
        tracker.spawn_on(
            async move {
                let _guard = guard;
                match tokio::net::TcpStream::from_std(std_client) {
                    Ok(client) => session(client).await,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot register the client on its worker")
                    }
                }
            },
            &w.handle,
        );
    }

    /// Chooses the worker for a new session from `host` and counts the session there: the
    /// host's worker while it has sessions open, else (or with no host) the least-loaded worker.
    /// Returns the worker's index and what the session's guard gives back. `workers` is not
    /// empty.
    fn place(&self, host: Option<IpAddr>) -> (usize, Option<(IpAddr, Hosts)>) {
        let least = || {
            (0..self.workers.len())
                .min_by_key(|&i| self.workers[i].open.load(Ordering::Relaxed))
                .unwrap_or(0)
        };
        let Some(ip) = host else {
            let i = least();
            self.workers[i].open.fetch_add(1, Ordering::Relaxed);
            return (i, None);
        };
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let entry = hosts.entry(ip).or_insert_with(|| (least(), 0));
        entry.1 += 1;
        let i = entry.0;
        self.workers[i].open.fetch_add(1, Ordering::Relaxed);
        (i, Some((ip, self.hosts.clone())))
    }

    /// Stops every worker: sessions still open are dropped (their sockets closed). Returns
    /// once every worker thread has dropped its runtime.
    pub async fn stop(&self) {
        for w in &self.workers {
            if let Some(s) = w.stop.lock().ok().and_then(|mut s| s.take()) {
                let _ = s.send(());
            }
        }
        for w in &self.workers {
            let done = w.done.lock().ok().and_then(|mut d| d.take());
            if let Some(d) = done {
                let _ = d.await;
            }
        }
    }
}

/// Worker threads for a `threads` setting: 1 runs sessions on the main runtime, 0 starts one
/// worker per CPU available to the process, N starts N.
pub fn count_for(threads: usize) -> usize {
    match threads {
        1 => 0,
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokio::io::AsyncReadExt;

    /// Connects to `addr` from the loopback address `from` (any port).
    async fn connect_from(from: &str, addr: std::net::SocketAddr) -> tokio::net::TcpStream {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(format!("{from}:0").parse().unwrap()).unwrap();
        s.connect(addr).await.unwrap()
    }

    /// Two sessions from each of two client hosts on two workers: each host's sessions share a
    /// worker thread, the hosts get one each, none runs on the accepting thread; `stop` ends the
    /// workers and closes what was left on them, and no host entry outlives its sessions.
    #[tokio::test(flavor = "current_thread")]
    async fn hosts_spread_over_workers_and_stop_closes_them() {
        let workers = Workers::start(2, Placement::Host).unwrap();
        let tracker = TaskTracker::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(IpAddr, String)>();
        let mut clients = Vec::new();
        for from in ["127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"] {
            clients.push(connect_from(from, addr).await);
            let (stream, peer) = listener.accept().await.unwrap();
            let tx = tx.clone();
            workers.spawn(&tracker, stream, move |mut s| async move {
                let name = std::thread::current().name().unwrap_or("").to_string();
                let _ = tx.send((peer.ip(), name));
                // Hold the session open until the client closes (or the worker stops).
                let mut b = [0u8; 1];
                let _ = s.read(&mut b).await;
            });
        }
        let mut per_host: HashMap<IpAddr, Vec<String>> = HashMap::new();
        for _ in 0..4 {
            let (ip, thread) = rx.recv().await.unwrap();
            per_host.entry(ip).or_default().push(thread);
        }
        let threads: Vec<&Vec<String>> = per_host.values().collect();
        assert_eq!(threads.len(), 2, "{per_host:?}");
        for t in &threads {
            assert_eq!(t.len(), 2, "{per_host:?}");
            assert_eq!(t[0], t[1], "one host, one worker: {per_host:?}");
            assert!(t[0].starts_with("data-"), "{per_host:?}");
        }
        assert_ne!(
            threads[0][0], threads[1][0],
            "two hosts, two workers: {per_host:?}"
        );
        assert_eq!(tracker.len(), 4);

        workers.stop().await;
        tracker.close();
        tokio::time::timeout(std::time::Duration::from_secs(5), tracker.wait())
            .await
            .expect("every session ended with its worker");
        assert!(
            workers.hosts.lock().unwrap().is_empty(),
            "no entry outlives its sessions"
        );
        for mut c in clients {
            let mut b = [0u8; 1];
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), c.read(&mut b))
                .await
                .expect("closed, not hanging");
            assert!(
                matches!(n, Ok(0) | Err(_)),
                "the session's socket is closed"
            );
        }
    }

    /// A host whose sessions all ended is placed afresh: on the least-loaded worker.
    #[tokio::test(flavor = "current_thread")]
    async fn a_host_without_sessions_goes_to_the_least_loaded_worker() {
        let workers = Workers::start(2, Placement::Host).unwrap();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let (wa, ga) = workers.place(Some(a));
        let (wa2, ga2) = workers.place(Some(a));
        assert_eq!(wa, wa2);
        let (wb, gb) = workers.place(Some(b));
        assert_ne!(
            wa, wb,
            "the second host goes where there are fewer sessions"
        );
        let guards = |g: Option<(IpAddr, Hosts)>, i: usize| OpenGuard {
            open: workers.workers[i].open.clone(),
            host: g,
        };
        drop(guards(ga, wa));
        drop(guards(ga2, wa));
        assert!(!workers.hosts.lock().unwrap().contains_key(&a));
        // `a`'s worker is now empty and `b`'s has one: `a` is placed afresh, on the emptier one.
        let (wa3, _ga3) = workers.place(Some(a));
        assert_eq!(wa3, wa);
        drop(guards(gb, wb));
        workers.stop().await;
    }

    /// With `placement = "connection"`, one host's sessions spread over the workers, and no host
    /// entry is kept for them.
    #[tokio::test(flavor = "current_thread")]
    async fn connection_placement_spreads_one_host() {
        let workers = Workers::start(2, Placement::Connection).unwrap();
        let tracker = TaskTracker::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(connect_from("127.0.0.2", addr).await);
            let (stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            workers.spawn(&tracker, stream, move |mut s| async move {
                let _ = tx.send(std::thread::current().name().unwrap_or("").to_string());
                let mut b = [0u8; 1];
                let _ = s.read(&mut b).await;
            });
        }
        let mut per_thread: HashMap<String, usize> = HashMap::new();
        for _ in 0..4 {
            *per_thread.entry(rx.recv().await.unwrap()).or_default() += 1;
        }
        assert_eq!(
            per_thread.values().copied().collect::<Vec<_>>(),
            vec![2, 2],
            "one host, both workers: {per_thread:?}"
        );
        assert!(workers.hosts.lock().unwrap().is_empty());
        drop(clients);
        workers.stop().await;
    }

    #[test]
    fn one_thread_means_no_workers() {
        assert_eq!(count_for(1), 0);
        assert_eq!(count_for(3), 3);
        assert!(count_for(0) >= 1);
    }
}
