//! The shim's log: logrus-style lines into the `log` FIFO of the bundle the shim server was started in (containerd
//! reads it into its own log), as containerd_shim's logger does, with one difference: once that FIFO has no reader
//! any more (containerd closes it when that first container of a grouping is deleted, while the shim serves the
//! others), the logger stops writing. containerd_shim's logger keeps writing; every write then raises SIGPIPE, which
//! containerd_shim's signal thread logs at debug level, which raises SIGPIPE again: a busy loop that starves its
//! SIGCHLD handling (children were left unreaped, an exec never finished).

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

struct FifoLog {
    file: Mutex<Option<File>>,
}

impl log::Log for FifoLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let Ok(mut g) = self.file.lock() else { return };
        let Some(f) = g.as_mut() else { return };
        let level = match r.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warning",
            log::Level::Info => "info",
            log::Level::Debug => "debug",
            log::Level::Trace => "trace",
        };
        let line = format!(
            "time=\"{}\" level={level} msg={:?} runtime={}\n",
            keel_runtime::cli::state_dir::rfc3339_now(),
            r.args().to_string(),
            crate::RUNTIME_ID
        );
        if f.write_all(line.as_bytes()).is_err() {
            // EPIPE (no reader any more) or worse: stop logging for good.
            *g = None;
        }
    }

    fn flush(&self) {}
}

/// Log into `./log` (the FIFO containerd made in the bundle), at debug level with containerd's `-debug`.
pub fn init(debug: bool) {
    let file = std::fs::OpenOptions::new().write(true).open("log").ok();
    if log::set_boxed_logger(Box::new(FifoLog { file: Mutex::new(file) })).is_ok() {
        log::set_max_level(if debug { log::LevelFilter::Debug } else { log::LevelFilter::Info });
    }
}
