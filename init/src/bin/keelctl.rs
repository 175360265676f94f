//! keelctl: the control client (all logic in `keel_init::client`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(keel_init::client::main(&args));
}
