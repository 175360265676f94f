//! A process's stdio as containerd hands it over: paths of FIFOs (or `file://` paths) for stdin, stdout and stderr,
//! or a terminal.
//!
//! Without a terminal the FIFOs are given to the process itself: no copying, no thread, no pipe in between (runc-v2
//! copies through pipes with goroutines). stdin is opened read-only, so the process sees EOF when containerd's
//! writer closes (CloseIO needs nothing more); stdout/stderr write-only. Both opens wait for containerd's end (it
//! opens it asynchronously), as runc-v2's do. The shim keeps no copy once the process has them.
//!
//! With a terminal, the pty master arrives over a console socket; two small threads copy stdin FIFO -> master and
//! master -> stdout FIFO, and ResizePty sets the master's window size.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;

/// The opened stdio of a process about to start (non-terminal case).
#[derive(Default)]
pub struct Stdio {
    pub stdin: Option<File>,
    /// Keeps the stdin pump (if any) from outliving the process; held by the process record.
    pub pump: Option<Pump>,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
}

impl Stdio {
    pub fn raw(&self) -> (Option<RawFd>, Option<RawFd>, Option<RawFd>) {
        (
            self.stdin.as_ref().map(|f| f.as_raw_fd()),
            self.stdout.as_ref().map(|f| f.as_raw_fd()),
            self.stderr.as_ref().map(|f| f.as_raw_fd()),
        )
    }
}

fn clear_nonblock(f: &File) {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
}

fn is_fifo(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).map(|m| m.file_type().is_fifo()).unwrap_or(false)
}

/// The path of a stdio URI: a plain path or `file://PATH` (`binary://` log drivers are not supported).
fn path_of(id: &str, uri: &str) -> Result<PathBuf, Error> {
    if let Some(p) = uri.strip_prefix("file://") {
        return Ok(PathBuf::from(p));
    }
    if uri.contains("://") && !uri.starts_with("fifo://") {
        return Err(Error::Invalid(format!("{id}: stdio {uri:?}: only FIFOs and file:// are supported")));
    }
    Ok(PathBuf::from(uri.strip_prefix("fifo://").unwrap_or(uri)))
}

/// Keeps a stdin pump thread from waiting forever for a writer that never comes (`ctr run -d` makes a stdin FIFO
/// but never opens it): on drop (the process's delete), a writer of our own is opened and closed, which lets the
/// thread's open return and its copy end at EOF.
pub struct Pump {
    path: PathBuf,
    opened: Arc<AtomicBool>,
}

impl Drop for Pump {
    fn drop(&mut self) {
        if !self.opened.load(Ordering::SeqCst) {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&self.path);
        }
    }
}

/// What the process reads as stdin.
pub enum Input {
    /// The FIFO itself: containerd's writer was there within the first wait.
    Direct(File),
    /// The read end of a pipe a thread fills from the FIFO once containerd's writer comes.
    Pumped(File, Pump),
}

const ST_WAITING: u8 = 0;
const ST_DELIVERED: u8 = 1;
const ST_GAVE_UP: u8 = 2;

/// Open the stdin FIFO at `p` read-only and blocking, so the open waits for containerd's writer (containerd opens
/// its end asynchronously, and a reader that came first would read EOF at once), as runc-v2 does. The open runs
/// in a thread: if the writer is there within `first_wait` the process gets the FIFO itself; otherwise it gets a
/// pipe, and the thread copies the FIFO into it once the writer comes (runc-v2 always copies). With `to`, the
/// thread copies into that file instead (a pty master) and nothing is returned.
fn open_fifo_read(id: &str, p: &Path, first_wait: Duration, to: Option<File>) -> Result<Option<Input>, Error> {
    let state = Arc::new(AtomicU8::new(if to.is_some() { ST_GAVE_UP } else { ST_WAITING }));
    let opened = Arc::new(AtomicBool::new(false));
    let (ftx, frx) = std::sync::mpsc::channel::<std::io::Result<File>>();
    let (wtx, wrx) = std::sync::mpsc::channel::<File>();
    let (st2, op2, p2) = (state.clone(), opened.clone(), p.to_path_buf());
    let mut to = to;
    let direct_to = to.take();
    std::thread::Builder::new()
        .name("stdin".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let r = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(&p2);
            op2.store(true, Ordering::SeqCst);
            if st2.compare_exchange(ST_WAITING, ST_DELIVERED, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                let _ = ftx.send(r);
                return;
            }
            let Ok(from) = r else { return };
            let sink = match direct_to {
                Some(f) => f,
                None => match wrx.recv() {
                    Ok(f) => f,
                    Err(_) => return,
                },
            };
            copy(from, sink);
        })
        .map_err(|e| Error::io(format!("{id}: stdin {}: thread", p.display()), "", e))?;
    let pump = Pump { path: p.to_path_buf(), opened };
    if state.load(Ordering::SeqCst) == ST_GAVE_UP {
        // Copying into `to`: the thread owns it; the pump unblocks it at delete.
        drop(wtx);
        return Ok(Some(Input::Pumped(File::from(dup_devnull()?), pump)));
    }
    if let Ok(r) = frx.recv_timeout(first_wait) {
        return r.map(|f| Some(Input::Direct(f))).map_err(|e| Error::io("open stdin", p, e).context(id));
    }
    if state.compare_exchange(ST_WAITING, ST_GAVE_UP, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        // Delivered meanwhile.
        let r = frx
            .recv()
            .map_err(|e| Error::Invalid(e.to_string()).context(format!("{id}: open stdin {}", p.display())))?;
        return r.map(|f| Some(Input::Direct(f))).map_err(|e| Error::io("open stdin", p, e).context(id));
    }
    let (rd, wr) = keel_sys::io::pipe2(libc::O_CLOEXEC)
        .map_err(|e| Error::Sys(keel_sys::Error::sys("pipe", "", e)).context(id))?;
    let _ = wtx.send(File::from(wr));
    Ok(Some(Input::Pumped(File::from(rd), pump)))
}

fn dup_devnull() -> Result<OwnedFd, Error> {
    File::open("/dev/null").map(OwnedFd::from).map_err(|e| Error::io("open", "/dev/null", e))
}

/// Open `uri` for the process to read (stdin): a FIFO as [`open_fifo_read`] says, a plain file as it is.
pub fn open_read(id: &str, uri: &str) -> Result<Option<Input>, Error> {
    if uri.is_empty() {
        return Ok(None);
    }
    let p = path_of(id, uri)?;
    if !is_fifo(&p) {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&p)
            .map_err(|e| Error::io("open stdin", &p, e).context(id))?;
        return Ok(Some(Input::Direct(f)));
    }
    open_fifo_read(id, &p, Duration::from_millis(3), None)
}

/// Open `uri` for the process to write (stdout, stderr).
pub fn open_write(id: &str, uri: &str) -> Result<Option<File>, Error> {
    if uri.is_empty() {
        return Ok(None);
    }
    let p = path_of(id, uri)?;
    if !is_fifo(&p) {
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&p)
            .map_err(|e| Error::io("open log file", &p, e).context(id))?;
        return Ok(Some(f));
    }
    // Write-only, once containerd's reader is there (the reader then sees EOF when the process exits). containerd
    // opens its end asynchronously, so it may be a moment late: a FIFO opened O_WRONLY|O_NONBLOCK without a reader
    // fails with ENXIO; retry for up to 10 s (runc-v2 blocks in open for as long). A read-write open would not wait,
    // but output written before the reader came would be lost when the process exits first (a FIFO's buffer goes
    // with its last open file). Still no reader after 10 s: read-write, so the container runs anyway.
    let open_wr = || std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(&p);
    let mut r = open_wr();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut delay = std::time::Duration::from_micros(50);
    while matches!(&r, Err(e) if e.raw_os_error() == Some(libc::ENXIO)) && std::time::Instant::now() < deadline {
        std::thread::sleep(delay);
        delay = (delay * 2).min(std::time::Duration::from_millis(5));
        r = open_wr();
    }
    let f = match r {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            containerd_shim::warn!("{id}: no reader on {} after 10 s: opened read-write", p.display());
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&p)
                .map_err(|e| Error::io("open", &p, e).context(id))?
        }
        Err(e) => return Err(Error::io("open", &p, e).context(id)),
    };
    clear_nonblock(&f);
    Ok(Some(f))
}

/// Open the three stdio URIs for a process that runs without a terminal. stdout and stderr may name the same
/// FIFO; it is opened once.
pub fn open(id: &str, stdin: &str, stdout: &str, stderr: &str) -> Result<Stdio, Error> {
    let (stdin, pump) = match open_read(id, stdin)? {
        None => (None, None),
        Some(Input::Direct(f)) => (Some(f), None),
        Some(Input::Pumped(f, p)) => (Some(f), Some(p)),
    };
    let stdout_f = open_write(id, stdout)?;
    let stderr_f = if !stderr.is_empty() && stderr == stdout {
        stdout_f.as_ref().map(|f| f.try_clone()).transpose().map_err(|e| Error::io("dup stdout", "", e).context(id))?
    } else {
        open_write(id, stderr)?
    };
    Ok(Stdio { stdin, pump, stdout: stdout_f, stderr: stderr_f })
}

/// A console socket: the runtime connects to it and sends the pty master (runc's --console-socket protocol).
pub struct ConsoleSocket {
    pub path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new(path: PathBuf) -> Result<ConsoleSocket, Error> {
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|e| Error::io("bind console socket", &path, e))?;
        Ok(ConsoleSocket { path, listener })
    }

    /// Receive the pty master (the runtime has connected and sent it by now, or does within `timeout_ms`).
    pub fn receive(&self, timeout_ms: i32) -> Result<File, Error> {
        let mut p = libc::pollfd { fd: self.listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: valid pollfd.
        if unsafe { libc::poll(&mut p, 1, timeout_ms) } <= 0 {
            return Err(Error::Invalid(format!(
                "no pty master on console socket {} within {timeout_ms} ms",
                self.path.display()
            )));
        }
        let (conn, _) = self.listener.accept().map_err(|e| Error::io("accept on console socket", &self.path, e))?;
        let mut buf = [0u8; 256];
        let (_, fd) = keel_sys::io::recv_fd(conn.as_raw_fd(), &mut buf)
            .map_err(|e| Error::Sys(keel_sys::Error::sys("receive pty master on", &self.path, e)))?;
        if let Some(fd) = fd {
            return Ok(File::from(fd));
        }
        Err(Error::Invalid(format!("console socket {}: message without a file descriptor", self.path.display())))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Set the window size of a pty master.
pub fn resize(master: &File, width: u32, height: u32) -> Result<(), Error> {
    let ws = libc::winsize { ws_row: height as u16, ws_col: width as u16, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ with a valid winsize pointer on our fd.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ as _, &ws) } != 0 {
        return Err(Error::io("resize pty", "", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn copy(mut from: File, mut to: File) {
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break, // EIO on the master once the slave side is gone
        }
    }
}

fn copy_thread(name: &str, from: File, to: File) {
    let r = std::thread::Builder::new().name(name.into()).stack_size(64 * 1024).spawn(move || copy(from, to));
    if let Err(e) = r {
        containerd_shim::error!("cannot start the {name} copy thread: {e}");
    }
}

/// Wire a terminal: copy stdin FIFO -> master and master -> stdout FIFO. Returns the master (for ResizePty).
pub fn wire_console(id: &str, master: File, stdin: &str, stdout: &str) -> Result<(Arc<File>, Option<Pump>), Error> {
    let mut pump = None;
    if !stdin.is_empty() {
        let p = path_of(id, stdin)?;
        let m = master.try_clone().map_err(|e| Error::io("dup pty master", "", e).context(id))?;
        if is_fifo(&p) {
            if let Some(Input::Pumped(_, pp)) = open_fifo_read(id, &p, Duration::ZERO, Some(m))? {
                pump = Some(pp);
            }
        } else if let Some(Input::Direct(f)) = open_read(id, stdin)? {
            copy_thread("stdin", f, m);
        }
    }
    if let Some(out) = open_write(id, stdout)? {
        let m = master.try_clone().map_err(|e| Error::io("dup pty master", "", e).context(id))?;
        copy_thread("stdout", m, out);
    }
    Ok((Arc::new(master), pump))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fifo(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        keel_sys::mkfifo(&p, 0o600).unwrap();
        p
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("keel-shim-stdio-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn uris() {
        assert_eq!(path_of("c", "/a/b").unwrap(), PathBuf::from("/a/b"));
        assert_eq!(path_of("c", "file:///var/log/x").unwrap(), PathBuf::from("/var/log/x"));
        assert_eq!(path_of("c", "fifo:///a").unwrap(), PathBuf::from("/a"));
        assert!(path_of("c", "binary:///usr/bin/logger?x=1").unwrap_err().to_string().contains("c: stdio"));
    }

    #[test]
    fn stdout_waits_for_a_late_reader_and_nothing_is_lost() {
        let d = tmp("out");
        let p = fifo(&d, "out");
        let p2 = p.clone();
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::read_to_string(&p2).unwrap()
        });
        let mut w = open_write("c", &p.to_string_lossy()).unwrap().unwrap();
        w.write_all(b"hello\n").unwrap();
        drop(w);
        assert_eq!(reader.join().unwrap(), "hello\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn stdin_from_a_late_writer_is_pumped_until_eof() {
        let d = tmp("in");
        let p = fifo(&d, "in");
        let (mut r, pump) = match open_read("c", &p.to_string_lossy()).unwrap().unwrap() {
            Input::Pumped(f, pump) => (f, pump),
            Input::Direct(_) => panic!("no writer yet: expected a pump"),
        };
        std::fs::write(&p, b"data").unwrap(); // the writer comes, writes, closes
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "data");
        drop(pump);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn stdin_with_a_writer_waiting_is_the_fifo_itself() {
        let d = tmp("in2");
        let p = fifo(&d, "in");
        let p2 = p.clone();
        let writer = std::thread::spawn(move || std::fs::write(&p2, b"x"));
        std::thread::sleep(Duration::from_millis(50)); // the writer blocks in open
        match open_read("c", &p.to_string_lossy()).unwrap().unwrap() {
            Input::Direct(mut f) => {
                let mut s = String::new();
                f.read_to_string(&mut s).unwrap();
                assert_eq!(s, "x");
            }
            Input::Pumped(..) => panic!("writer present: expected the FIFO itself"),
        }
        writer.join().unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_pump_without_writer_ends_when_dropped() {
        let d = tmp("in3");
        let p = fifo(&d, "in");
        let Some(Input::Pumped(mut r, pump)) = open_read("c", &p.to_string_lossy()).unwrap() else {
            panic!("expected a pump")
        };
        drop(pump); // delete of a `ctr run -d` task: nobody ever opened stdin
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap(); // EOF, not a hang
        assert_eq!(s, "");
        let _ = std::fs::remove_dir_all(&d);
    }
}
