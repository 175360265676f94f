//! A process's stdio as containerd hands it over: paths of FIFOs (or `file://` paths) for stdin, stdout and stderr,
//! or a terminal.
//!
//! Without a terminal the FIFOs are given to the process itself: no copying, no thread, no pipe in between (runc-v2
//! copies through pipes with goroutines). stdin is opened read-only, so the process sees EOF when containerd's
//! writer closes (CloseIO needs nothing more); stdout/stderr are opened write-only when containerd's reader is
//! there, else read-write (so the open cannot block). The shim keeps no copy once the process has them.
//!
//! With a terminal, the pty master arrives over a console socket; two small threads copy stdin FIFO -> master and
//! master -> stdout FIFO, and ResizePty sets the master's window size.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The opened stdio of a process about to start (non-terminal case).
#[derive(Default)]
pub struct Stdio {
    pub stdin: Option<File>,
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
fn path_of(id: &str, uri: &str) -> Result<PathBuf, String> {
    if let Some(p) = uri.strip_prefix("file://") {
        return Ok(PathBuf::from(p));
    }
    if uri.contains("://") && !uri.starts_with("fifo://") {
        return Err(format!("{id}: stdio {uri:?}: only FIFOs and file:// are supported"));
    }
    Ok(PathBuf::from(uri.strip_prefix("fifo://").unwrap_or(uri)))
}

/// Open `uri` for the process to read (stdin).
pub fn open_read(id: &str, uri: &str) -> Result<Option<File>, String> {
    if uri.is_empty() {
        return Ok(None);
    }
    let p = path_of(id, uri)?;
    // O_NONBLOCK: opening a FIFO for reading must not wait for containerd's writer.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&p)
        .map_err(|e| format!("{id}: open stdin {}: {e}", p.display()))?;
    clear_nonblock(&f);
    Ok(Some(f))
}

/// Open `uri` for the process to write (stdout, stderr).
pub fn open_write(id: &str, uri: &str) -> Result<Option<File>, String> {
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
            .map_err(|e| format!("{id}: open log file {}: {e}", p.display()))?;
        return Ok(Some(f));
    }
    // Reader present: write-only (the reader sees EOF when the process exits). No reader yet: read-write, so
    // that the open does not block (a FIFO opened O_WRONLY|O_NONBLOCK without a reader fails with ENXIO).
    let f = match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(&p) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&p)
            .map_err(|e| format!("{id}: open {}: {e}", p.display()))?,
        Err(e) => return Err(format!("{id}: open {}: {e}", p.display())),
    };
    clear_nonblock(&f);
    Ok(Some(f))
}

/// Open the three stdio URIs for a process that runs without a terminal. stdout and stderr may name the same
/// FIFO; it is opened once.
pub fn open(id: &str, stdin: &str, stdout: &str, stderr: &str) -> Result<Stdio, String> {
    let stdin = open_read(id, stdin)?;
    let stdout_f = open_write(id, stdout)?;
    let stderr_f = if !stderr.is_empty() && stderr == stdout {
        stdout_f.as_ref().map(|f| f.try_clone()).transpose().map_err(|e| format!("{id}: dup stdout: {e}"))?
    } else {
        open_write(id, stderr)?
    };
    Ok(Stdio { stdin, stdout: stdout_f, stderr: stderr_f })
}

/// A console socket: the runtime connects to it and sends the pty master (runc's --console-socket protocol).
pub struct ConsoleSocket {
    pub path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new(path: PathBuf) -> Result<ConsoleSocket, String> {
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|e| format!("bind console socket {}: {e}", path.display()))?;
        Ok(ConsoleSocket { path, listener })
    }

    /// Receive the pty master (the runtime has connected and sent it by now, or does within `timeout_ms`).
    pub fn receive(&self, timeout_ms: i32) -> Result<File, String> {
        let mut p = libc::pollfd { fd: self.listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: valid pollfd.
        if unsafe { libc::poll(&mut p, 1, timeout_ms) } <= 0 {
            return Err(format!("no pty master on console socket {} within {timeout_ms} ms", self.path.display()));
        }
        let (conn, _) =
            self.listener.accept().map_err(|e| format!("accept on console socket {}: {e}", self.path.display()))?;
        let mut buf = [0u8; 256];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("receive pty master on {}: {e}", self.path.display()))?;
        for c in msg.cmsgs().map_err(|e| format!("console socket {}: {e}", self.path.display()))? {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    // SAFETY: a fresh fd received via SCM_RIGHTS; we own it now.
                    return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
                }
            }
        }
        Err(format!("console socket {}: message without a file descriptor", self.path.display()))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Set the window size of a pty master.
pub fn resize(master: &File, width: u32, height: u32) -> Result<(), String> {
    let ws = libc::winsize { ws_row: height as u16, ws_col: width as u16, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ with a valid winsize pointer on our fd.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ as _, &ws) } != 0 {
        return Err(format!("resize pty: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn copy_thread(name: &str, mut from: File, mut to: File) {
    let r = std::thread::Builder::new().name(name.into()).stack_size(64 * 1024).spawn(move || {
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
    });
    if let Err(e) = r {
        containerd_shim::error!("cannot start the {name} copy thread: {e}");
    }
}

/// Wire a terminal: copy stdin FIFO -> master and master -> stdout FIFO. Returns the master (for ResizePty).
pub fn wire_console(id: &str, master: File, stdin: &str, stdout: &str) -> Result<Arc<File>, String> {
    if let Some(inp) = open_read(id, stdin)? {
        let m = master.try_clone().map_err(|e| format!("{id}: dup pty master: {e}"))?;
        copy_thread("stdin", inp, m);
    }
    if let Some(out) = open_write(id, stdout)? {
        let m = master.try_clone().map_err(|e| format!("{id}: dup pty master: {e}"))?;
        copy_thread("stdout", m, out);
    }
    Ok(Arc::new(master))
}
