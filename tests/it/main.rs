//! The integration tests, as one test binary (`cargo test --release --test it`): each file here is
//! a module, and the module is the test path's prefix (`cargo test --release --test it delivery::`).
//!
//! One binary rather than one per file because every test binary links OpenCV, ONNX Runtime and
//! zxing: eleven such links cost minutes and over a gigabyte in a cold build. Cargo builds this
//! folder as one target because it holds a `main.rs`; add new tests as a module here, not as a new
//! `tests/*.rs` (that would be a binary of its own again).
//!
//! All tests share one process, two at a time (`--test-threads=2`), so none may change
//! process-wide state (environment variables, the current directory, a global logger) or leave a
//! thread running after it ends: give settings to the `gatewatch` child process instead.

mod common;

mod accuracy_rendered;
mod accuracy_shared;
mod acl;
mod bench;
mod cli;
mod commands;
mod delivery;
mod end_to_end;
mod face_lane;
mod faces;
mod lane;
mod models;
mod plate_colour;
mod qr;
mod service;
mod sources;
mod tls;
mod unit;
mod yard;
