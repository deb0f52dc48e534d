use std::process::ExitCode;

use clap::Parser;

use vitrine::cli::{Cli, Command};
use vitrine::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Some(Command::Msg(args)) => vitrine::control::client::run(args),
        Some(Command::Probe { json }) => {
            let probe = vitrine::backend::drm::probe::probe();
            if json {
                println!("{}", serde_json::to_string_pretty(&probe).unwrap_or_default());
            } else {
                print!("{}", vitrine::backend::drm::probe::human(&probe));
            }
            0
        }
        Some(Command::Decode { json, unpaced, files }) => {
            vitrine::logging::init(&vitrine::logging::filter_for("warn", 0));
            match vitrine::video::decode::run(files, !unpaced) {
                Ok(report) if json => {
                    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
                    report.code()
                }
                Ok(report) => {
                    print!("{}", report.human());
                    report.code()
                }
                Err(err) => {
                    eprintln!("vitrine decode: {err}");
                    1
                }
            }
        }
        Some(Command::SampleClip { file, size, seconds }) => match vitrine::sample::write(&file, size, seconds, 25) {
            Ok(pictures) => {
                println!("{}: {pictures} pictures, {}x{}, H.264", file.display(), size.0, size.1);
                0
            }
            Err(err) => {
                eprintln!("vitrine sample-clip: {err}");
                1
            }
        },
        Some(Command::CheckConfig { file }) => match Config::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                0
            }
            Err(err) => {
                eprintln!("{err}");
                1
            }
        },
        None => {
            let (config, source) = match vitrine::run::load_config(&cli.run) {
                Ok(found) => found,
                Err(err) => {
                    eprintln!("vitrine: {err:#}");
                    return ExitCode::from(1);
                }
            };
            vitrine::logging::init(&vitrine::logging::filter_for(&config.log.filter, cli.run.verbose));
            vitrine::process::install_panic_hook();
            match &source {
                Some(path) => tracing::info!(config = %path.display(), "configuration loaded"),
                None => tracing::info!("no configuration file: using the built-in defaults"),
            }
            match vitrine::run::run(cli.run, config) {
                Ok(code) => code,
                Err(err) => {
                    tracing::error!("{err:#}");
                    eprintln!("vitrine: {err:#}");
                    1
                }
            }
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}
