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
//! The accept loop hands each client to the worker with the fewest open sessions. Its socket
//! moves from the accepting runtime's reactor to the worker's: one `epoll_ctl` each way, once
//! per connection.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

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

/// The data-path workers. With none, sessions run on the caller's runtime.
pub struct Workers {
    workers: Vec<Worker>,
}

/// Decrements a worker's open-session count however the session ends.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// No worker threads: sessions run where the accept loop runs (`threads = 1`).
    pub fn none() -> Workers {
        Workers {
            workers: Vec::new(),
        }
    }

    /// Starts `n` worker threads, each with its own single-threaded runtime. Each runtime is
    /// built on its own thread, so a thread or runtime the system refuses (a process limit, a
    /// memory limit) is an error here, never a runtime dropped where it cannot be; the workers
    /// already started end when the returned error drops them.
    pub fn start(n: usize) -> std::io::Result<Workers> {
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
        Ok(Workers { workers })
    }

    /// Number of worker threads (0: sessions run on the caller's runtime).
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Runs `session` on the least-loaded worker (or on the current runtime when there are
    /// none), tracked by `tracker`. `session` receives the client socket re-registered on the
    /// runtime it runs on.
    pub fn spawn<F, Fut>(&self, tracker: &TaskTracker, client: tokio::net::TcpStream, session: F)
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(w) = self
            .workers
            .iter()
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
        else {
            tracker.spawn(session(client));
            return;
        };
        // Leave this reactor now; join the worker's inside its runtime.
        let std_client = match client.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "cannot hand the client to a worker; closing it");
                return;
            }
        };
        w.open.fetch_add(1, Ordering::Relaxed);
        let guard = OpenGuard(w.open.clone());
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

    /// Four long sessions on two workers: two each, each on a worker thread, none on the
    /// accepting thread; `stop` ends the workers and closes what was left on them.
    #[tokio::test(flavor = "current_thread")]
    async fn sessions_spread_over_workers_and_stop_closes_them() {
        let workers = Workers::start(2).unwrap();
        let tracker = TaskTracker::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            let (stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            workers.spawn(&tracker, stream, move |mut s| async move {
                let name = std::thread::current().name().unwrap_or("").to_string();
                let _ = tx.send(name);
                // Hold the session open until the client closes (or the worker stops).
                let mut b = [0u8; 1];
                let _ = s.read(&mut b).await;
            });
        }
        let mut per_thread: HashMap<String, usize> = HashMap::new();
        for _ in 0..4 {
            *per_thread.entry(rx.recv().await.unwrap()).or_default() += 1;
        }
        assert_eq!(per_thread.get("data-0"), Some(&2), "{per_thread:?}");
        assert_eq!(per_thread.get("data-1"), Some(&2), "{per_thread:?}");
        assert_eq!(tracker.len(), 4);

        workers.stop().await;
        tracker.close();
        tokio::time::timeout(std::time::Duration::from_secs(5), tracker.wait())
            .await
            .expect("every session ended with its worker");
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

    #[test]
    fn one_thread_means_no_workers() {
        assert_eq!(count_for(1), 0);
        assert_eq!(count_for(3), 3);
        assert!(count_for(0) >= 1);
    }
}
