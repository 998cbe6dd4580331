//! gatewatch: an edge vision appliance for border-gate lanes and truck yards.
//!
//! Frames flow from [`source`]s through the [`plate`] pipeline ([`pipeline`]) into [`event`]s that
//! [`delivery`] publishes over MQTT; [`app`] assembles a running box and [`hub`] answers the hub's
//! commands. Side stages on their own threads read QR codes ([`qr`]) and recognise faces against
//! the box's gallery ([`face`]). [`cmds`] holds one module per subcommand (`main.rs`
//! only parses arguments and dispatches); [`tooling`] holds what only the tools use (demo clip,
//! accuracy measurement).

pub mod app;
pub mod cmds;
pub mod config;
pub mod delivery;
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
pub mod tooling;
pub mod topic;
pub mod vision;
pub mod yard;
