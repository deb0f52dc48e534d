//! vitrine: an embedded Wayland compositor for video kiosks and digital signage.
//!
//! The binary is a thin shell around [`run::run`]; tests drive the library directly.

pub mod audio;
pub mod backend;
pub mod cec;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod embed;
pub mod fourcc;
pub mod frames;
pub mod image;
pub mod input;
pub mod kiosk;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod process;
pub mod render;
pub mod rotation;
pub mod run;
pub mod sample;
pub mod scene;
pub mod state;
pub mod systemd;
pub mod video;
pub mod wayland;
pub mod window;
