//! keel-runc: the runc-compatible CLI of keel's OCI runtime (all logic lives in `keel_shim::cli`).

fn main() {
    std::process::exit(keel_shim::cli::main(std::env::args_os()));
}
