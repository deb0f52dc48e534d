//! Command line of the `vitrine` binary.

use std::path::PathBuf;

pub use crate::config::{OutputSpec, RendererChoice};

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "vitrine",
    version,
    about = "A Wayland compositor for video kiosks and digital signage",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Talk to a running vitrine over its control socket
    Msg(MsgArgs),
    /// Describe the display hardware: DRM devices, connectors, modes, planes and their formats
    Probe {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration file and report errors with line and column
    CheckConfig {
        /// The TOML file to check
        file: PathBuf,
    },
    /// Write a short sample clip (colour bars, made with the built-in H.264 encoder) as a raw
    /// H.264 stream: what the first run plays
    SampleClip {
        /// Where to write it (e.g. sample.h264)
        file: PathBuf,
        /// Picture size
        #[arg(long, default_value = "640x360", value_parser = parse_size)]
        size: (u32, u32),
        /// Length in seconds (25 pictures a second)
        #[arg(long, default_value_t = 10)]
        seconds: u32,
    },
    /// Decode video files through the decoder vitrine would use, paced at their own rate and
    /// shown nowhere, then print the audit (is this board's decoder up to this file?)
    Decode {
        /// Print the audit as JSON
        #[arg(long)]
        json: bool,
        /// As fast as the decoder goes, instead of at the files' frame rate
        #[arg(long)]
        unpaced: bool,
        /// The files, in order
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text.split_once('x').ok_or("WIDTHxHEIGHT, e.g. 640x360")?;
    Ok((w.parse().map_err(|_| "a width in pixels")?, h.parse().map_err(|_| "a height in pixels")?))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum BackendChoice {
    /// DRM on a free seat or VT, nested inside a desktop session, headless otherwise
    #[default]
    Auto,
    Drm,
    Nested,
    Headless,
}

#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Which backend shows the outputs
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,

    /// Configuration file (default: $XDG_CONFIG_HOME/vitrine/vitrine.toml, then /etc/vitrine/vitrine.toml)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Virtual output of the headless backend, or the window size of the nested one (repeatable)
    #[arg(long = "output", value_name = "WIDTHxHEIGHT@HZ")]
    pub outputs: Vec<OutputSpec>,

    /// What composites the layers no hardware plane takes on the DRM backend (default: the
    /// config's [drm] renderer, "auto")
    #[arg(long, value_enum, value_name = "auto|gles|pixman")]
    pub renderer: Option<RendererChoice>,

    /// Name of the Wayland socket to create in $XDG_RUNTIME_DIR (default: the first free wayland-N)
    #[arg(long, value_name = "NAME")]
    pub socket: Option<String>,

    /// Write a PNG of the first output once a client has drawn (or after 5 s), for a first look
    #[arg(long, value_name = "FILE.png")]
    pub screenshot_on_start: Option<PathBuf>,

    /// Play these video files (MP4/MOV or raw H.264), in order, through the V4L2 decoder
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub play: Vec<PathBuf>,

    /// Play the list over and over
    #[arg(long = "loop", requires = "play")]
    pub loop_playlist: bool,

    /// Exit once the playlist has been played (status 1 if an item could not be played)
    #[arg(long)]
    pub exit_when_done: bool,

    /// Write the video audit (frames, copies, mappings, commits, latency) as JSON here at exit
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,

    /// Print the video audit in words when vitrine stops: the decoder, where the pictures went,
    /// what was copied
    #[arg(long)]
    pub audit: bool,

    /// More logging (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// The kiosk app and its arguments, started with WAYLAND_DISPLAY pointing at vitrine
    #[arg(last = true, value_name = "APP [ARGS]")]
    pub app: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MsgArgs {
    /// Print the reply as JSON
    #[arg(long)]
    pub json: bool,

    /// Control socket to use (default: $VITRINE_SOCKET, else the one of $WAYLAND_DISPLAY, else the only one running)
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    #[command(subcommand)]
    pub request: MsgCommand,
}

#[derive(Debug, Subcommand)]
pub enum MsgCommand {
    /// The running compositor's version
    Version,
    /// Outputs with their modes and positions
    Outputs,
    /// Connected clients with their surfaces, app ids and outputs
    Clients,
    /// Write a PNG of what an output shows, composited by vitrine
    Screenshot {
        /// Output name (default: the first output)
        #[arg(long)]
        output: Option<String>,
        /// Where to write the PNG
        file: PathBuf,
    },
    /// Display-path counters: commits, test commits, framebuffers created, frames presented
    Stats,
    /// Per output, each layer with the plane it is on, or composited and why
    Planes,
    /// Read the configuration file again (an invalid one is rejected and the running one kept)
    Reload,
    /// Play a video file now, replacing the playlist
    Play { file: PathBuf },
    /// Pause the video
    Pause,
    /// Resume the video
    Resume,
    /// Skip to the next playlist item
    Next,
    /// The video: file, position, fps, decoder, the path frames take, errors; the TVs' power
    Status,
    /// Switch the displays (and the TVs, through HDMI-CEC) on or off, until the schedule's next
    /// switch
    Display {
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// The sound's volume: a percentage (0 to 100), `mute` or `unmute`
    Volume { level: String },
    /// Stop the compositor
    Quit,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_app_is_collected() {
        let cli = Cli::try_parse_from(["vitrine", "--backend", "headless", "--", "foot", "-e", "top"]).unwrap();
        assert_eq!(cli.run.backend, BackendChoice::Headless);
        assert_eq!(cli.run.app, ["foot", "-e", "top"]);
    }

    #[test]
    fn unknown_option_is_an_error() {
        let err = Cli::try_parse_from(["vitrine", "--frobnicate"]).unwrap_err();
        assert!(err.to_string().contains("--frobnicate"), "{err}");
    }
}
