//! gatewatch: an edge vision appliance for border-gate lanes and truck yards.
//!
//! Frames flow from [`source`]s through the [`plate`] pipeline ([`pipeline`]) into [`event`]s that
//! [`delivery`] publishes over MQTT. [`face`] detects and embeds faces (not yet a camera stage). [`cmds`] holds one module per subcommand; `main.rs` only
//! parses arguments and dispatches.

pub mod app;
pub mod cmds;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod demo_dataset;
pub mod eval;
pub mod event;
pub mod face;
pub mod heartbeat;
pub mod hub;
pub mod logging;
pub mod models;
pub mod motion;
pub mod pipeline;
pub mod plate;
pub mod qr;
pub mod redact;
pub mod source;
pub mod state_dir;
pub mod systemd;
pub mod topic;
pub mod vision;
pub mod yard;
