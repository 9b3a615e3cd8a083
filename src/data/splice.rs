//! Zero-copy relay through a kernel pipe with `splice(2)`: the only module with `unsafe`.
//!
//! Bytes move socket → pipe → socket without entering userspace. The pipe is created with
//! `pipe2(O_NONBLOCK | O_CLOEXEC)`: non-blocking so a full or empty pipe returns `EAGAIN`
//! instead of stalling a runtime thread, close-on-exec so no descriptor leaks into a child. Both
//! ends are `OwnedFd`s owned by the [`Pipe`] and closed when it drops; the sockets are borrowed
//! as raw descriptors for the duration of one call and never closed here.
//!
//! `splice` is called with `SPLICE_F_NONBLOCK | SPLICE_F_MOVE`. Readiness is the caller's job
//! (`relay.rs` wraps each call in tokio's `try_io`, so `EAGAIN` clears the socket's readiness).
//! [`Pipe::new`] returns `None` where pipes cannot be had (descriptor limit, non-Linux), and the
//! caller copies through a buffer instead.

use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Bytes one pipe holds by default on Linux (16 pages).
pub const PIPE_CAPACITY: usize = 64 * 1024;

/// A kernel pipe used as the buffer of one relay direction.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes spliced in and not yet spliced out. Tracked here because the kernel does not say;
    /// the relay must empty the pipe before splicing in again.
    pub pending: usize,
}

#[cfg(target_os = "linux")]
impl Pipe {
    /// A new non-blocking, close-on-exec pipe, or `None` (e.g. `EMFILE`): the caller copies.
    pub fn new() -> Option<Pipe> {
        let mut fds: [libc::c_int; 2] = [-1, -1];
        // SAFETY: `fds` is a valid, writable array of two c_ints, as pipe2 requires.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return None;
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else; each
        // is wrapped exactly once and closed when its OwnedFd drops.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Some(Pipe {
            read,
            write,
            pending: 0,
        })
    }

    /// Moves up to `max` bytes from the socket `from` into the pipe. `Ok(0)` is end of stream.
    pub fn splice_in(&mut self, from: RawFd, max: usize) -> io::Result<usize> {
        let n = splice(from, self.write.as_raw_fd(), max)?;
        self.pending += n;
        Ok(n)
    }

    /// Moves pending bytes from the pipe into the socket `to`.
    pub fn splice_out(&mut self, to: RawFd) -> io::Result<usize> {
        let n = splice(self.read.as_raw_fd(), to, self.pending)?;
        self.pending -= n.min(self.pending);
        Ok(n)
    }
}

#[cfg(target_os = "linux")]
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice only reads and writes kernel-side buffers; both descriptors are open for the
    // duration of the call (the caller borrows the sockets, the pipe owns its ends) and the null
    // offsets are what splice requires for pipes and sockets.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Pipes kept per runtime thread between bursts. An idle session holds no pipe; a burst takes
/// one from here (or creates one) and gives it back empty, so a forced `splice` relay costs two
/// descriptors per *active* direction instead of per session, and creating pipes does not sit
/// on the path of every request.
const POOL_PER_THREAD: usize = 64;

thread_local! {
    static POOL: std::cell::RefCell<Vec<Pipe>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Pipe {
    /// A pipe from this thread's pool, or a new one; `None` when none can be had.
    pub fn take() -> Option<Pipe> {
        POOL.with(|p| p.borrow_mut().pop()).or_else(Pipe::new)
    }

    /// Returns an empty pipe to this thread's pool (a pipe with bytes in it is closed instead:
    /// its bytes belong to a session that is ending).
    pub fn give_back(self) {
        if self.pending != 0 {
            return;
        }
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_PER_THREAD {
                p.push(self);
            }
        });
    }
}

/// Stand-in where splice(2) does not exist: never constructed, so the relay always copies.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub struct Pipe {
    pub pending: usize,
}

#[cfg(not(target_os = "linux"))]
impl Pipe {
    pub fn new() -> Option<Pipe> {
        None
    }
    pub fn splice_in(&mut self, _from: i32, _max: usize) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
    pub fn splice_out(&mut self, _to: i32) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    #[test]
    fn moves_bytes_between_sockets() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let l2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l2.local_addr().unwrap()).unwrap();
        let (mut d, _) = l2.accept().unwrap();

        a.write_all(b"hello splice").unwrap();
        let mut p = Pipe::new().expect("pipe");
        let mut moved = 0;
        for _ in 0..1000 {
            match p.splice_in(b.as_raw_fd(), PIPE_CAPACITY) {
                Ok(n) => {
                    moved += n;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((moved, p.pending), (12, 12));
        assert_eq!(p.splice_out(c.as_raw_fd()).unwrap(), 12);
        assert_eq!(p.pending, 0);
        let mut got = [0u8; 12];
        d.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello splice");
        drop(a);
        // End of stream reads as 0, not as an error.
        let mut eof = None;
        for _ in 0..1000 {
            match p.splice_in(b.as_raw_fd(), PIPE_CAPACITY) {
                Ok(n) => {
                    eof = Some(n);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(eof, Some(0));
    }
}
