//! The `gatewatch` command line.

use clap::{Parser, Subcommand};
use gatewatch::cmds;
use gatewatch::logging::{self, LogFormat};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gatewatch",
    version,
    about = "Edge vision for border-gate lanes: plates, QR codes and faces over MQTT"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cameras, pipelines and MQTT delivery.
    Run(cmds::run::RunArgs),
    /// Validate a configuration file and print what it resolves to.
    Check(cmds::check::CheckArgs),
    /// List or verify the model files.
    #[command(subcommand)]
    Models(cmds::models::ModelsCmd),
    /// Measure accuracy and speed on labelled data.
    #[command(subcommand)]
    Eval(cmds::eval::EvalCmd),
    /// Measurements that need the whole product running.
    #[command(subcommand)]
    Bench(cmds::bench::BenchCmd),
    /// The embedded demo input.
    #[command(subcommand)]
    Demo(cmds::demo::DemoCmd),
    /// The face gallery: enrol, import, remove, list.
    #[command(subcommand)]
    Face(cmds::face::FaceCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let result = match &cli.command {
        Command::Run(a) => cmds::run::run(a),
        Command::Check(a) => cmds::check::run(a),
        Command::Models(c) => cmds::models::run(c),
        Command::Eval(c) => cmds::eval::run(c),
        Command::Demo(c) => cmds::demo::run(c),
        Command::Bench(c) => cmds::bench::run(c),
        Command::Face(c) => cmds::face::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gatewatch: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
