//! A sentinel that lies, for what a real one cannot be made to do: it answers
//! `SENTINEL get-master-addr-by-name` with the real master and `PING`, accepts `SUBSCRIBE`, and
//! then announces a failover of that master (`+selected-slave`, then
//! `+failover-state-send-slaveof-noone`) every `period`, with no failover behind it. Payloads
//! are in Redis 7's format. Loopback only; its threads end when it is dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::sentinel_wire::{answer, failover_events, message, Answer};

pub struct FakeSentinel {
    addr: String,
    stop: Arc<AtomicBool>,
    /// Failover announcements sent, on every subscription.
    pub lies: Arc<AtomicU64>,
}

/// Reads one command (a RESP array of bulk strings); `None` at EOF or on garbage.
fn read_command(r: &mut BufReader<TcpStream>) -> Option<Vec<String>> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let n: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n.min(64));
    for _ in 0..n.min(64) {
        line.clear();
        r.read_line(&mut line).ok()?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut buf = vec![0u8; len + 2];
        std::io::Read::read_exact(r, &mut buf).ok()?;
        args.push(String::from_utf8_lossy(&buf[..len]).into_owned());
    }
    Some(args)
}

impl FakeSentinel {
    /// Starts it. `master` and `replica` are `127.0.0.1:PORT` addresses of real nodes.
    pub fn start(name: &str, master: &str, replica: &str, period: Duration) -> FakeSentinel {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake sentinel");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let lies = Arc::new(AtomicU64::new(0));
        let (name, master, replica) = (name.to_string(), master.to_string(), replica.to_string());
        let (stop2, lies2) = (stop.clone(), lies.clone());
        thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (stop, lies) = (stop2.clone(), lies2.clone());
                        let (name, master, replica) =
                            (name.clone(), master.clone(), replica.clone());
                        thread::spawn(move || {
                            serve(s, &name, &master, &replica, period, &stop, &lies)
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeSentinel { addr, stop, lies }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for FakeSentinel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    s: TcpStream,
    name: &str,
    master: &str,
    replica: &str,
    period: Duration,
    stop: &AtomicBool,
    lies: &AtomicU64,
) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(mut w) = s.try_clone() else { return };
    let mut r = BufReader::new(s);
    while !stop.load(Ordering::Relaxed) {
        let Some(cmd) = read_command(&mut r) else {
            return;
        };
        let reply = match answer(&cmd, name, master) {
            Answer::Reply(reply) => reply,
            Answer::Subscribed(confirmations) => {
                if w.write_all(confirmations.as_bytes()).is_err() {
                    return;
                }
                // Lie every `period` until stopped or the subscriber goes away.
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if Instant::now() >= next {
                        for (ch, payload) in failover_events(name, master, replica) {
                            if w.write_all(message(ch, &payload).as_bytes()).is_err() {
                                return;
                            }
                        }
                        lies.fetch_add(1, Ordering::Relaxed);
                        next += period;
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                return;
            }
        };
        if w.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
