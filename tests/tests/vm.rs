//! VM tests: build images with keel-image, boot them under QEMU TCG, assert on the serial console.
//! Run with `make test-vm` (they are #[ignore]d in plain `cargo test`).
