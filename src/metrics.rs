//! The Prometheus endpoint (`[metrics] listen`): what `vitrine msg stats` and `status` report,
//! as the text exposition format (version 0.0.4, made by the `prometheus` crate) at `/metrics`.
//!
//! It is served from the event loop like the control socket, and nothing a scraper does can
//! hold the loop: sockets never block, a request is at most 8 KiB of headers, each connection
//! has 5 seconds to send its request and take its answer, and at most 8 are served at once
//! (more are closed at once). The metrics are made at each scrape from the same counters
//! `stats` shows; nothing is kept between scrapes.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use serde_json::Value;
use smithay::reexports::calloop::generic::Generic;
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::reexports::calloop::{Interest, Mode, PostAction, RegistrationToken};

use crate::state::{Core, State};

/// Scrapers served at once; more are closed unanswered.
pub const MAX_SCRAPERS: usize = 8;
/// The longest request (line and headers) read.
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long a scraper has to send its request and read the answer.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// The endpoint's connections and what it counted.
#[derive(Default)]
pub struct Scrapers {
    open: HashMap<u64, Scraper>,
    next_id: u64,
    /// Answers sent (any status).
    pub answered: u64,
    /// Connections closed unanswered: too many at once, too slow, too long a request.
    pub refused: u64,
    refused_logged: Option<Instant>,
}

struct Scraper {
    stream: Rc<TcpStream>,
    /// The source reading the request.
    read: RegistrationToken,
    /// The source writing what of the answer the socket did not take at once (on a duplicate
    /// descriptor: epoll takes each descriptor once).
    write: Option<RegistrationToken>,
    /// The timer that closes the connection at its deadline (gone once it fired).
    deadline: Option<RegistrationToken>,
    request: Vec<u8>,
    answer: Vec<u8>,
}

/// Listen on `address` ("ADDRESS:PORT") and serve scrapes from the loop.
pub fn start(core: &mut Core, address: &str) -> Result<(), String> {
    let listener = TcpListener::bind(address).map_err(|e| format!("metrics: cannot listen on {address}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| format!("metrics: {address}: {e}"))?;
    let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| address.to_string());
    crate::listen::watch(
        core,
        "metrics",
        listener,
        |l: &TcpListener| match l.accept() {
            Ok((stream, _)) => Ok(Some(stream)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        },
        |state, stream| accept(&mut state.core, stream),
    )?;
    tracing::info!(address = %bound, "metrics: serving Prometheus metrics at http://{bound}/metrics");
    Ok(())
}

fn accept(core: &mut Core, stream: TcpStream) {
    let scrapers = &mut core.metrics;
    if scrapers.open.len() >= MAX_SCRAPERS || stream.set_nonblocking(true).is_err() {
        refuse(scrapers, "too many scrapers at once");
        return;
    }
    let id = scrapers.next_id;
    scrapers.next_id += 1;
    let stream = Rc::new(stream);
    let read = core.loop_handle.insert_source(
        Generic::new(stream.clone(), Interest::READ, Mode::Level),
        move |_, _, state| {
            readable(state, id);
            Ok(PostAction::Continue)
        },
    );
    let Ok(read) = read else { return };
    let deadline = core.loop_handle.insert_source(Timer::from_duration(DEADLINE), move |_, _, state| {
        if let Some(s) = state.core.metrics.open.get_mut(&id) {
            // This timer goes by itself.
            s.deadline = None;
            refuse(&mut state.core.metrics, "a scraper took longer than 5 s");
            close(&mut state.core, id);
        }
        TimeoutAction::Drop
    });
    match deadline {
        Ok(deadline) => {
            let scraper = Scraper {
                stream,
                read,
                write: None,
                deadline: Some(deadline),
                request: Vec::new(),
                answer: Vec::new(),
            };
            core.metrics.open.insert(id, scraper);
        }
        Err(_) => core.loop_handle.remove(read),
    }
}

/// Count a connection closed unanswered, and say so once a minute at most.
fn refuse(scrapers: &mut Scrapers, why: &'static str) {
    scrapers.refused += 1;
    let refused = scrapers.refused;
    crate::state::log_rarely(&mut scrapers.refused_logged, || {
        tracing::warn!(refused, limit = MAX_SCRAPERS, "metrics: {why}: closed unanswered")
    });
}

fn close(core: &mut Core, id: u64) {
    if let Some(s) = core.metrics.open.remove(&id) {
        for token in [Some(s.read), s.write, s.deadline].into_iter().flatten() {
            core.loop_handle.remove(token);
        }
    }
}

fn readable(state: &mut State, id: u64) {
    let Some(s) = state.core.metrics.open.get_mut(&id) else { return };
    let mut buf = [0u8; 2048];
    let mut reader: &TcpStream = &s.stream;
    match reader.read(&mut buf) {
        Ok(0) => return close(&mut state.core, id),
        // Answering already: what else comes is not read.
        Ok(_) if s.write.is_some() => return,
        Ok(n) => s.request.extend_from_slice(&buf[..n]),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => return,
        Err(_) => return close(&mut state.core, id),
    }
    let complete = s.request.windows(4).any(|w| w == b"\r\n\r\n") || s.request.windows(2).any(|w| w == b"\n\n");
    let answer = if complete {
        answer(state, id)
    } else if s.request.len() > MAX_REQUEST {
        response("431 Request Header Fields Too Large", "text/plain", "the request is longer than 8 KiB\n")
    } else {
        return;
    };
    send(&mut state.core, id, answer);
}

/// The answer to the request read on connection `id`.
fn answer(state: &State, id: u64) -> Vec<u8> {
    let Some(s) = state.core.metrics.open.get(&id) else { return Vec::new() };
    let request = String::from_utf8_lossy(&s.request);
    let mut words = request.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => match render(state) {
            Ok(text) => response("200 OK", TextEncoder::new().format_type(), &text),
            Err(err) => {
                tracing::error!(%err, "metrics: cannot encode them");
                response("500 Internal Server Error", "text/plain", &format!("{err}\n"))
            }
        },
        ("GET", _) => response("404 Not Found", "text/plain", "vitrine serves its metrics at /metrics\n"),
        _ => response("405 Method Not Allowed", "text/plain", "only GET /metrics is served\n"),
    }
}

fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Send `answer` on connection `id`: what the socket does not take now is written as the
/// scraper reads, within its deadline. The connection closes once it is all sent.
fn send(core: &mut Core, id: u64, answer: Vec<u8>) {
    core.metrics.answered += 1;
    let Some(s) = core.metrics.open.get_mut(&id) else { return };
    s.answer = answer;
    if !writable(core, id) {
        return;
    }
    let Some(s) = core.metrics.open.get_mut(&id) else { return };
    let write = s.stream.try_clone().map_err(|e| e.to_string()).and_then(|dup| {
        core.loop_handle
            .insert_source(Generic::new(dup, Interest::WRITE, Mode::Level), move |_, _, state| {
                writable(&mut state.core, id);
                Ok(PostAction::Continue)
            })
            .map_err(|e| e.to_string())
    });
    match write {
        Ok(token) => s.write = Some(token),
        Err(_) => close(core, id),
    }
}

/// Write what the socket takes of connection `id`'s answer; closes it once all is sent (or the
/// peer is gone). Whether some is left to write.
fn writable(core: &mut Core, id: u64) -> bool {
    let Some(s) = core.metrics.open.get_mut(&id) else { return false };
    let mut writer: &TcpStream = &s.stream;
    while !s.answer.is_empty() {
        match writer.write(&s.answer) {
            Ok(0) => break,
            Ok(n) => {
                s.answer.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => break,
        }
    }
    close(core, id);
    false
}

/// A counter from the `stats` document: (metric name, help, JSON pointer).
const COUNTERS: &[(&str, &str, &str)] = &[
    ("vitrine_video_frames_decoded_total", "Pictures the decoder delivered.", "/video/frames_decoded"),
    ("vitrine_video_frames_presented_total", "Pictures shown on the display.", "/video/frames_presented"),
    ("vitrine_video_frames_dropped_total", "Pictures dropped (late or never shown).", "/video/frames_dropped"),
    (
        "vitrine_video_frames_composited_total",
        "Repaints in which the video picture was composited rather than on a plane.",
        "/video/frames_composited",
    ),
    ("vitrine_video_frame_mappings_total", "Decoded pictures mapped for the CPU.", "/video/frame_mappings"),
    (
        "vitrine_video_cpu_copied_bytes_total",
        "Bytes of pictures the CPU copied or converted.",
        "/video/cpu_copied_bytes",
    ),
    ("vitrine_video_decode_errors_total", "Pictures the decoder failed.", "/video/decode_errors"),
    (
        "vitrine_video_decoder_failures_total",
        "Decoder failures (device errors, stalls, lost devices).",
        "/video/decoder_failures",
    ),
    ("vitrine_video_decoder_resets_total", "Decoders reopened after a failure.", "/video/decoder_resets"),
    ("vitrine_video_software_fallbacks_total", "Times software decoding took over.", "/video/software_fallbacks"),
    ("vitrine_video_vblanks_missed_total", "Vertical blanks a due picture missed.", "/video/vblanks_missed"),
    ("vitrine_audio_underruns_total", "Times the sound device ran dry.", "/video/audio_underruns"),
    (
        "vitrine_audio_device_failures_total",
        "Times the sound device could not be opened or failed while playing.",
        "/video/audio_device_failures",
    ),
    ("vitrine_audio_jumps_total", "Times sound was put right at once (silence or a cut).", "/video/audio_jumps"),
    ("vitrine_kms_commits_total", "Atomic commits.", "/commits"),
    ("vitrine_kms_test_commits_total", "TEST_ONLY commits of the plane planner.", "/test_commits"),
    ("vitrine_kms_commits_refused_total", "Commits the kernel refused.", "/commits_refused"),
    ("vitrine_kms_flips_timed_out_total", "Page flips that never came.", "/flips_timed_out"),
    ("vitrine_kms_frames_composited_total", "Frames that needed a composition.", "/frames_composited"),
    ("vitrine_kms_cpu_copied_bytes_total", "Bytes the CPU wrote composing scanout buffers.", "/cpu_copied_bytes"),
    ("vitrine_kms_framebuffers_created_total", "KMS framebuffers made.", "/framebuffers_created"),
    ("vitrine_repaints_total", "Repaints of any output.", "/frames/repaints"),
    ("vitrine_control_refused_total", "Control connections refused (too many).", "/control/refused"),
    ("vitrine_accept_pauses_total", "Times a listening socket paused (out of descriptors).", "/process/accept_pauses"),
];

/// The metrics now, in the text exposition format.
pub fn render(state: &State) -> Result<String, prometheus::Error> {
    let stats = crate::control::server::stats(state);
    let registry = Registry::new();
    let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        registry.register(Box::new(c.clone()))?;
        Ok(c)
    };
    let gauge = |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
        let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
        registry.register(Box::new(g.clone()))?;
        Ok(g)
    };
    // The metrics without labels: a count so far, or a level now.
    let total =
        |name: &str, help: &str, v: u64| counter(name, help, &[]).map(|c| c.with_label_values::<&str>(&[]).inc_by(v));
    let level =
        |name: &str, help: &str, v: i64| gauge(name, help, &[]).map(|g| g.with_label_values::<&str>(&[]).set(v));
    for (name, help, pointer) in COUNTERS {
        if let Some(v) = stats.pointer(pointer).and_then(Value::as_u64) {
            total(name, help, v)?;
        }
    }

    let core = &state.core;
    let presented = counter("vitrine_output_frames_presented_total", "Frames presented, per output.", &["output"])?;
    let on = gauge(
        "vitrine_output_on",
        "1 when the output shows pictures, 0 when the schedule turned it off.",
        &["output"],
    )?;
    for output in &core.outputs {
        let name = output.name();
        if let Some(f) = core.frames.get(output) {
            presented.with_label_values(&[name.as_str()]).inc_by(f.presented);
        }
        on.with_label_values(&[name.as_str()]).set(core.displays_on as i64);
    }
    level("vitrine_outputs", "Outputs vitrine drives.", core.outputs.len() as i64)?;
    let clients = core.clients_connected.load(std::sync::atomic::Ordering::Relaxed);
    level("vitrine_clients", "Wayland clients connected.", clients as i64)?;
    level("vitrine_control_connections", "Control socket connections open.", core.control.len() as i64)?;
    let cec = core.cec.states();
    if !cec.is_empty() {
        let tv = gauge(
            "vitrine_cec_tv_power",
            "1 for the power state the TV behind each output last reported over HDMI-CEC.",
            &["output", "state"],
        )?;
        let unanswered =
            counter("vitrine_cec_unanswered_total", "CEC messages the TV did not acknowledge.", &["output"])?;
        for a in &cec {
            let output = a.output.clone().unwrap_or_default();
            let state = serde_json::to_value(a.tv_power)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            tv.with_label_values(&[output.as_str(), state.as_str()]).set(1);
            unanswered.with_label_values(&[output.as_str()]).inc_by(a.unanswered);
        }
    }
    if let Some(app) = &core.kiosk.app {
        total("vitrine_app_restarts_total", "Times the kiosk app was started again.", app.restarts as u64)?;
    }
    if let Some(player) = &core.player {
        let status = player.status();
        let item = gauge(
            "vitrine_video_item_info",
            "The playlist item playing and its decoder (value 1).",
            &["file", "decoder"],
        )?;
        item.with_label_values(&[
            status.file.as_deref().unwrap_or_default(),
            status.decoder.as_deref().unwrap_or_default(),
        ])
        .set(1);
        level("vitrine_video_paused", "1 while the video is paused.", status.paused as i64)?;
        let position =
            prometheus::Gauge::new("vitrine_video_position_seconds", "Where the video is in the playing item.")?;
        registry.register(Box::new(position.clone()))?;
        position.set(status.position_s);
    }
    total("vitrine_metrics_scrapes_total", "Answers this endpoint sent.", core.metrics.answered)?;
    total(
        "vitrine_metrics_refused_total",
        "Scrapers closed unanswered (too many, too slow, too long).",
        core.metrics.refused,
    )?;

    // The process, under the names Prometheus' own clients use.
    let own = crate::process::Usage::now();
    level("process_resident_memory_bytes", "Resident memory size in bytes.", own.rss_bytes as i64)?;
    level("process_open_fds", "Number of open file descriptors.", own.fds as i64)?;
    level("process_threads", "Number of threads.", own.threads as i64)?;

    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
