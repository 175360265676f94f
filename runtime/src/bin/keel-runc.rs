//! keel-runc: the runc-compatible CLI of keel's OCI runtime (all logic lives in `keel_runtime::cli`).

fn main() {
    std::process::exit(keel_runtime::cli::main(std::env::args_os()));
}
