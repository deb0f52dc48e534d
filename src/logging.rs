//! tracing set-up: `RUST_LOG` overrides the configured filter; journald when started by systemd.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

/// The filter for `-v` counts when `RUST_LOG` is not set.
pub fn filter_for(configured: &str, verbose: u8) -> String {
    match verbose {
        0 => configured.to_string(),
        1 => format!("{configured},vitrine=debug"),
        _ => format!("{configured},vitrine=trace"),
    }
}

/// Install the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(filter: &str) {
    let env_filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some() && std::env::var_os("INVOCATION_ID").is_some();
    if under_systemd {
        if let Ok(journald) = tracing_journald::layer() {
            let _ = tracing_subscriber::registry()
                .with(env_filter)
                // Fields as they are named (OUTPUT=, CLIENT=, FILE=...): `journalctl -u vitrine
                // OUTPUT=HDMI-A-1` finds what happened on a screen.
                .with(journald.with_syslog_identifier("vitrine".into()).with_field_prefix(None))
                .try_init();
            return;
        }
    }
    let _ = tracing_subscriber::registry().with(env_filter).with(fmt::layer().with_writer(std::io::stderr)).try_init();
}
