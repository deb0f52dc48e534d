//! The video pipeline. Today: demuxing (MP4 and Annex-B H.264 into access units). The V4L2
//! decoders, the player and its pacing come on top of it.

pub mod demux;
