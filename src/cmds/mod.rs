//! One module per subcommand.

pub mod bench;
pub mod bench_pipeline;
pub mod check;
pub mod demo;
pub mod eval;
pub mod face;
pub mod models;
pub mod run;
pub mod run_commands;
