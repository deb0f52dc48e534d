//! HDMI-CEC: TVs switched on and off with the displays. vitrine is a playback device on the CEC
//! adapter of each HDMI output it drives, through the kernel's CEC framework (`/dev/cecN`; its
//! few ioctls are made here, with the uAPI's structures checked against their sizes: no
//! maintained crate covers it).
//!
//! Each adapter is served by a thread of its own, because the CEC bus is slow (a message takes
//! tens of milliseconds, a TV may take a second to answer) and its ioctls block: the loop only
//! sends the thread what it wants (the TV on or off) and gets back what the thread learnt (its
//! addresses, the TV's power, whether vitrine is the active source). A TV that does not answer
//! is tried again after 1, 2, 4… seconds, six times, and then at the next switch or when the
//! adapter's physical address changes (a TV plugged in); it is logged once, and nothing waits.
//!
//! On: `Image View On` to the TV and `Active Source` to all, so the TV wakes on vitrine's input.
//! Off: `Standby` to the TV. After each, the TV is asked for its power status. As a follower,
//! the thread answers what the kernel's core leaves to it: power status (on or standby, with the
//! displays), who is the active source, and `Feature Abort` to the rest; the core itself answers
//! the physical address, OSD name, CEC version and vendor id.
//!
//! Which adapter serves which output: `[cec] devices` when set; else the adapter's connector
//! info (a DRM card and connector); else, with a single adapter and a single output, that one.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;
use smithay::reexports::calloop::channel::{self, Event};

use crate::state::Core;

const CEC_MAX_LOG_ADDRS: usize = 4;

#[repr(C)]
#[derive(Clone, Copy)]
struct CecCaps {
    driver: [u8; 32],
    name: [u8; 32],
    available_log_addrs: u32,
    capabilities: u32,
    version: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CecMsg {
    tx_ts: u64,
    rx_ts: u64,
    len: u32,
    timeout: u32,
    sequence: u32,
    flags: u32,
    msg: [u8; 16],
    reply: u8,
    rx_status: u8,
    tx_status: u8,
    tx_arb_lost_cnt: u8,
    tx_nack_cnt: u8,
    tx_low_drive_cnt: u8,
    tx_error_cnt: u8,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CecLogAddrs {
    log_addr: [u8; CEC_MAX_LOG_ADDRS],
    log_addr_mask: u16,
    cec_version: u8,
    num_log_addrs: u8,
    vendor_id: u32,
    flags: u32,
    osd_name: [u8; 15],
    primary_device_type: [u8; CEC_MAX_LOG_ADDRS],
    log_addr_type: [u8; CEC_MAX_LOG_ADDRS],
    all_device_types: [u8; CEC_MAX_LOG_ADDRS],
    features: [[u8; 12]; CEC_MAX_LOG_ADDRS],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CecEvent {
    ts: u64,
    event: u32,
    flags: u32,
    /// For a state change: physical address, logical address mask, has connector info.
    raw: [u32; 16],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CecConnectorInfo {
    kind: u32,
    /// For a DRM connector: card number, connector id.
    raw: [u32; 16],
}

// The uAPI's sizes on every Linux ABI (its structures have no pointers or longs).
const _: () = assert!(std::mem::size_of::<CecCaps>() == 76);
const _: () = assert!(std::mem::size_of::<CecMsg>() == 56);
const _: () = assert!(std::mem::size_of::<CecLogAddrs>() == 92);
const _: () = assert!(std::mem::size_of::<CecEvent>() == 80);
const _: () = assert!(std::mem::size_of::<CecConnectorInfo>() == 68);

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((b'a' as u64) << 8) | nr
}
const READ: u64 = 2;
const WRITE: u64 = 1;
const ADAP_G_CAPS: u64 = ioc(READ | WRITE, 0, std::mem::size_of::<CecCaps>());
const ADAP_G_PHYS_ADDR: u64 = ioc(READ, 1, 2);
const ADAP_G_LOG_ADDRS: u64 = ioc(READ, 3, std::mem::size_of::<CecLogAddrs>());
const ADAP_S_LOG_ADDRS: u64 = ioc(READ | WRITE, 4, std::mem::size_of::<CecLogAddrs>());
const TRANSMIT: u64 = ioc(READ | WRITE, 5, std::mem::size_of::<CecMsg>());
const RECEIVE: u64 = ioc(READ | WRITE, 6, std::mem::size_of::<CecMsg>());
const DQEVENT: u64 = ioc(READ | WRITE, 7, std::mem::size_of::<CecEvent>());
const S_MODE: u64 = ioc(WRITE, 9, 4);
const ADAP_G_CONNECTOR_INFO: u64 = ioc(READ, 10, std::mem::size_of::<CecConnectorInfo>());
const _: () = assert!(ADAP_G_CAPS == 0xc04c_6100 && TRANSMIT == 0xc038_6105 && S_MODE == 0x4004_6109);

const CAP_LOG_ADDRS: u32 = 1 << 1;
const CAP_CONNECTOR_INFO: u32 = 1 << 8;
const MODE_INITIATOR: u32 = 0x1;
const MODE_FOLLOWER: u32 = 0x1 << 4;
const TX_STATUS_OK: u8 = 1 << 0;
const RX_STATUS_OK: u8 = 1 << 0;
const EVENT_STATE_CHANGE: u32 = 1;
const CONNECTOR_TYPE_DRM: u32 = 1;
const LOG_ADDR_INVALID: u8 = 0xff;
const PHYS_ADDR_INVALID: u16 = 0xffff;
const LOG_ADDR_TV: u8 = 0;
const BROADCAST: u8 = 15;
const LOG_ADDR_TYPE_PLAYBACK: u8 = 3;
const PRIM_DEVTYPE_PLAYBACK: u8 = 4;
const ALL_DEVTYPE_PLAYBACK: u8 = 0x10;
const CEC_VERSION_2_0: u8 = 6;
const VENDOR_ID_NONE: u32 = 0xffff_ffff;

const MSG_FEATURE_ABORT: u8 = 0x00;
const MSG_IMAGE_VIEW_ON: u8 = 0x04;
const MSG_STANDBY: u8 = 0x36;
const MSG_ACTIVE_SOURCE: u8 = 0x82;
const MSG_REQUEST_ACTIVE_SOURCE: u8 = 0x85;
const MSG_SET_STREAM_PATH: u8 = 0x86;
const MSG_GIVE_DEVICE_POWER_STATUS: u8 = 0x8f;
const MSG_REPORT_POWER_STATUS: u8 = 0x90;
const ABORT_UNRECOGNIZED_OP: u8 = 0;

/// Tries of a message the TV does not acknowledge, 1, 2, 4… seconds apart, before waiting for
/// the next switch or a new physical address.
const TRIES: u32 = 6;

/// The TV's power as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TvPower {
    On,
    Standby,
    ToOn,
    ToStandby,
}

impl TvPower {
    fn from_operand(v: u8) -> Option<TvPower> {
        Some(match v {
            0 => TvPower::On,
            1 => TvPower::Standby,
            2 => TvPower::ToOn,
            3 => TvPower::ToStandby,
            _ => return None,
        })
    }

    fn settling(self) -> bool {
        matches!(self, TvPower::ToOn | TvPower::ToStandby)
    }
}

/// What the loop knows of an adapter (shown by `msg outputs`, `msg status` and the metrics).
#[derive(Debug, Clone, Serialize)]
pub struct AdapterState {
    pub device: String,
    pub name: String,
    pub output: Option<String>,
    /// "a.b.c.d", or none while no TV gives the adapter one.
    pub physical_address: Option<String>,
    pub logical_address: Option<u8>,
    pub tv_power: Option<TvPower>,
    pub active_source: bool,
    /// Messages the TV did not acknowledge, in all.
    pub unanswered: u64,
    /// Why the adapter is not used, when it is not.
    pub error: Option<String>,
}

enum Command {
    Power(bool),
}

/// What an adapter's thread learnt.
struct Report {
    index: usize,
    update: Box<dyn FnOnce(&mut AdapterState) + Send>,
}

struct Adapter {
    state: AdapterState,
    commands: mpsc::Sender<Command>,
    wake: UnixStream,
}

/// The CEC adapters vitrine drives.
#[derive(Default)]
pub struct Cec {
    adapters: Vec<Adapter>,
}

impl Cec {
    pub fn states(&self) -> Vec<AdapterState> {
        self.adapters.iter().map(|a| a.state.clone()).collect()
    }

    /// The TVs on (Image View On, Active Source) or off (Standby).
    pub fn power(&mut self, on: bool) {
        for a in &mut self.adapters {
            if a.commands.send(Command::Power(on)).is_ok() {
                let _ = std::io::Write::write(&mut a.wake, &[1]);
            }
        }
    }
}

fn ioctl<T>(fd: RawFd, request: u64, arg: &mut T) -> std::io::Result<()> {
    // SAFETY: `arg` is the structure `request` reads and writes, of the size encoded in it.
    let r = unsafe { libc::ioctl(fd, request as _, arg as *mut T) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn zeroed<T>() -> T {
    // SAFETY: only used for the plain-data uAPI structures above.
    unsafe { std::mem::zeroed() }
}

fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn phys_text(a: u16) -> Option<String> {
    (a != PHYS_ADDR_INVALID).then(|| format!("{}.{}.{}.{}", a >> 12, (a >> 8) & 15, (a >> 4) & 15, a & 15))
}

/// The adapters present: `/dev/cecN`.
fn adapters_present() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.strip_prefix("cec").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Find the adapters for `outputs` (name, and for DRM outputs the card number and connector
/// id) and start serving them. Nothing to do without adapters.
pub fn start(core: &mut Core, outputs: &[(String, Option<(u32, u32)>)]) {
    let config = core.config.cec.clone();
    if !config.enable {
        return;
    }
    let present = adapters_present();
    if present.is_empty() && config.devices.is_empty() {
        tracing::debug!("cec: no adapters: the displays are switched by DPMS alone");
        return;
    }
    // Explicit ties first, then the connector info, then the single adapter of a single output.
    let mut ties: BTreeMap<PathBuf, String> =
        config.devices.iter().map(|(output, dev)| (PathBuf::from(dev), output.clone())).collect();
    if ties.is_empty() {
        let mut untied = Vec::new();
        for path in &present {
            match connector_of(path) {
                Some(c) => {
                    if let Some((name, _)) = outputs.iter().find(|(_, id)| *id == Some(c)) {
                        ties.insert(path.clone(), name.clone());
                    }
                }
                None => untied.push(path.clone()),
            }
        }
        if ties.is_empty() && untied.len() == 1 && outputs.len() == 1 {
            ties.insert(untied[0].clone(), outputs[0].0.clone());
        } else if ties.is_empty() && !untied.is_empty() {
            tracing::info!(
                adapters = ?untied,
                "cec: adapters whose driver does not say which connector they serve: tie them to outputs with [cec] devices"
            );
        }
    }
    let (sender, receiver) = channel::channel::<Report>();
    let inserted = core.loop_handle.insert_source(receiver, |event, _, state| {
        if let Event::Msg(report) = event {
            if let Some(a) = state.core.cec.adapters.get_mut(report.index) {
                (report.update)(&mut a.state);
            }
        }
    });
    if let Err(err) = inserted {
        tracing::error!(%err, "cec: cannot watch the adapters' threads");
        return;
    }
    let osd_name = config.osd_name.clone();
    let on = core.displays_on;
    for (path, output) in ties {
        let index = core.cec.adapters.len();
        let (commands, wanted) = mpsc::channel();
        let (wake, woken) = match UnixStream::pair().and_then(|(w, r)| w.set_nonblocking(true).map(|()| (w, r))) {
            Ok(pair) => pair,
            Err(err) => {
                tracing::error!(%err, "cec: cannot make a wake-up pair");
                continue;
            }
        };
        let _ = commands.send(Command::Power(on));
        let state = AdapterState {
            device: path.display().to_string(),
            name: String::new(),
            output: Some(output.clone()),
            physical_address: None,
            logical_address: None,
            tv_power: None,
            active_source: false,
            unanswered: 0,
            error: None,
        };
        let report = Reporter { index, sender: sender.clone() };
        let thread_path = path.clone();
        let name = osd_name.clone();
        let spawned = std::thread::Builder::new()
            .name("vitrine-cec".into())
            .spawn(move || serve(&thread_path, &name, wanted, woken, report));
        match spawned {
            Ok(_) => {
                tracing::info!(device = %path.display(), output, "cec: switching the TV with the displays");
                core.cec.adapters.push(Adapter { state, commands, wake });
            }
            Err(err) => tracing::error!(%err, device = %path.display(), "cec: cannot start its thread"),
        }
    }
}

/// The DRM (card, connector id) an adapter says it serves.
fn connector_of(path: &Path) -> Option<(u32, u32)> {
    let file = std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(path).ok()?;
    let fd = file.as_raw_fd();
    let mut caps: CecCaps = zeroed();
    ioctl(fd, ADAP_G_CAPS, &mut caps).ok()?;
    if caps.capabilities & CAP_CONNECTOR_INFO == 0 {
        return None;
    }
    let mut info: CecConnectorInfo = zeroed();
    ioctl(fd, ADAP_G_CONNECTOR_INFO, &mut info).ok()?;
    (info.kind == CONNECTOR_TYPE_DRM).then_some((info.raw[0], info.raw[1]))
}

/// Sends what the thread learns to the loop.
struct Reporter {
    index: usize,
    sender: channel::Sender<Report>,
}

impl Reporter {
    fn send(&self, update: impl FnOnce(&mut AdapterState) + Send + 'static) {
        let _ = self.sender.send(Report { index: self.index, update: Box::new(update) });
    }
}

/// One adapter's thread: claim a playback address, then do what the loop wants and answer the
/// bus, until vitrine stops (the wake-up pair closes).
fn serve(path: &Path, osd_name: &str, wanted: mpsc::Receiver<Command>, woken: UnixStream, report: Reporter) {
    let device = path.display().to_string();
    let failed = |report: &Reporter, why: String| {
        tracing::warn!(device, %why, "cec: adapter not used");
        report.send(move |s| s.error = Some(why));
    };
    // Blocking: a transmit returns once the bus has carried the message (and its reply).
    let file = match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(err) => return failed(&report, format!("cannot open it: {err}")),
    };
    let fd = file.as_raw_fd();
    let mut caps: CecCaps = zeroed();
    if let Err(err) = ioctl(fd, ADAP_G_CAPS, &mut caps) {
        return failed(&report, format!("not a CEC adapter: {err}"));
    }
    let name = text(&caps.name);
    report.send({
        let name = name.clone();
        move |s| s.name = name
    });
    let mut mode = MODE_INITIATOR | MODE_FOLLOWER;
    if let Err(err) = ioctl(fd, S_MODE, &mut mode) {
        return failed(&report, format!("cannot follow its messages: {err}"));
    }
    let mut addrs: CecLogAddrs = zeroed();
    if let Err(err) = ioctl(fd, ADAP_G_LOG_ADDRS, &mut addrs) {
        return failed(&report, format!("cannot read its logical addresses: {err}"));
    }
    if addrs.num_log_addrs > 0 && addrs.primary_device_type[0] != PRIM_DEVTYPE_PLAYBACK {
        return failed(
            &report,
            format!("configured by another program as device type {}: left alone", addrs.primary_device_type[0]),
        );
    }
    if addrs.num_log_addrs == 0 {
        if caps.capabilities & CAP_LOG_ADDRS == 0 {
            return failed(&report, "its driver sets the logical addresses and set none".into());
        }
        let mut claim: CecLogAddrs = zeroed();
        claim.num_log_addrs = 1;
        claim.cec_version = CEC_VERSION_2_0;
        claim.vendor_id = VENDOR_ID_NONE;
        for (d, s) in claim.osd_name.iter_mut().zip(osd_name.bytes().take(14)) {
            *d = s;
        }
        claim.primary_device_type[0] = PRIM_DEVTYPE_PLAYBACK;
        claim.log_addr_type[0] = LOG_ADDR_TYPE_PLAYBACK;
        claim.all_device_types[0] = ALL_DEVTYPE_PLAYBACK;
        // Returns once claimed, or at once while there is no physical address (claimed then by
        // the kernel, said by a state-change event).
        if let Err(err) = ioctl(fd, ADAP_S_LOG_ADDRS, &mut claim) {
            return failed(&report, format!("cannot claim a playback address: {err}"));
        }
    }
    let mut bus = Bus { fd, own: LOG_ADDR_INVALID, phys: PHYS_ADDR_INVALID, report, device, on: false, active: false };
    bus.refresh();
    let mut want: Option<bool> = None;
    let mut tries = 0u32;
    let mut retry_at: Option<Instant> = None;
    // What the displays were doing when the thread started.
    while let Ok(Command::Power(on)) = wanted.try_recv() {
        (want, bus.on, retry_at) = (Some(on), on, Some(Instant::now()));
    }
    let mut recheck_at: Option<Instant> = None;
    let mut rechecks = 0u32;
    loop {
        let deadline = [retry_at, recheck_at].into_iter().flatten().min();
        let timeout =
            deadline.map_or(-1, |d| d.saturating_duration_since(Instant::now()).as_millis().min(60_000) as i32);
        let mut fds = [
            libc::pollfd { fd, events: libc::POLLIN | libc::POLLPRI, revents: 0 },
            libc::pollfd { fd: woken.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: two valid pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
        if fds[1].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            return;
        }
        if fds[1].revents & libc::POLLIN != 0 {
            let mut buf = [0u8; 64];
            if matches!(std::io::Read::read(&mut &woken, &mut buf), Ok(0)) {
                return;
            }
            while let Ok(Command::Power(on)) = wanted.try_recv() {
                (want, bus.on, tries, retry_at) = (Some(on), on, 0, Some(Instant::now()));
            }
        }
        if fds[0].revents & libc::POLLPRI != 0 {
            let mut event: CecEvent = zeroed();
            if ioctl(fd, DQEVENT, &mut event).is_ok() && event.event == EVENT_STATE_CHANGE {
                let had = bus.phys;
                bus.refresh();
                if bus.phys != had && bus.phys != PHYS_ADDR_INVALID && want.is_none() {
                    // A TV (back) on the other end: told what the displays do.
                    want = Some(bus.on);
                }
                if want.is_some() && bus.own != LOG_ADDR_INVALID {
                    tries = 0;
                    retry_at = Some(Instant::now());
                }
            }
        }
        if fds[0].revents & libc::POLLIN != 0 {
            let mut msg: CecMsg = zeroed();
            if ioctl(fd, RECEIVE, &mut msg).is_ok() {
                bus.follow(&msg);
            }
        }
        let now = Instant::now();
        if let (Some(on), Some(at)) = (want, retry_at) {
            if at <= now && bus.own != LOG_ADDR_INVALID {
                retry_at = None;
                if bus.switch(on) {
                    want = None;
                    rechecks = 0;
                    recheck_at = Some(now + Duration::from_secs(1));
                } else {
                    tries += 1;
                    if tries < TRIES {
                        retry_at = Some(now + Duration::from_secs(1 << (tries - 1)));
                    } else {
                        tracing::warn!(
                            device = bus.device,
                            tries,
                            "cec: the TV does not answer: tried again at the next switch or when a TV is plugged in"
                        );
                    }
                }
            } else if at <= now {
                // No logical address yet: the state change that brings one tries again.
                retry_at = None;
                want = Some(on);
            }
        }
        if recheck_at.is_some_and(|at| at <= now) {
            recheck_at = None;
            // A TV on its way to a state is asked again, a few times.
            // At least twice: a TV may answer the first time with the state it is leaving (seen
            // with cec-follower: "on" a second after Standby).
            let settling = bus.ask_power().is_none_or(TvPower::settling) || rechecks == 0;
            if settling && rechecks < 5 {
                rechecks += 1;
                recheck_at = Some(now + Duration::from_secs(2));
            }
        }
    }
}

/// The bus as one adapter's thread sees it.
struct Bus {
    fd: RawFd,
    own: u8,
    phys: u16,
    report: Reporter,
    device: String,
    /// What vitrine says of its own power (the displays).
    on: bool,
    active: bool,
}

impl Bus {
    /// The adapter's addresses now.
    fn refresh(&mut self) {
        let mut phys: u16 = PHYS_ADDR_INVALID;
        let _ = ioctl(self.fd, ADAP_G_PHYS_ADDR, &mut phys);
        let mut addrs: CecLogAddrs = zeroed();
        let _ = ioctl(self.fd, ADAP_G_LOG_ADDRS, &mut addrs);
        self.phys = phys;
        self.own = if addrs.num_log_addrs > 0 { addrs.log_addr[0] } else { LOG_ADDR_INVALID };
        let (own, text) = ((self.own != LOG_ADDR_INVALID).then_some(self.own), phys_text(phys));
        tracing::info!(device = self.device, physical_address = ?text, logical_address = ?own, "cec: adapter state");
        self.report.send(move |s| {
            s.physical_address = text;
            s.logical_address = own;
        });
    }

    /// Send `body` (opcode and operands) to `to`; with `reply`, wait for that opcode back.
    fn send(&self, to: u8, body: &[u8], reply: Option<u8>) -> Result<CecMsg, String> {
        let mut msg: CecMsg = zeroed();
        msg.msg[0] = (self.own << 4) | to;
        msg.msg[1..=body.len()].copy_from_slice(body);
        msg.len = 1 + body.len() as u32;
        if let Some(r) = reply {
            msg.reply = r;
            msg.timeout = 1000;
        }
        ioctl(self.fd, TRANSMIT, &mut msg).map_err(|e| e.to_string())?;
        if msg.tx_status & TX_STATUS_OK == 0 {
            return Err(format!("not acknowledged (tx status {:#x})", msg.tx_status));
        }
        if reply.is_some() && msg.rx_status & RX_STATUS_OK == 0 {
            return Err(format!("no reply (rx status {:#x})", msg.rx_status));
        }
        Ok(msg)
    }

    /// The TV on and vitrine its source, or the TV to standby. Whether the TV took it.
    fn switch(&mut self, on: bool) -> bool {
        self.on = on;
        let done = if on {
            let phys = self.phys.to_be_bytes();
            self.send(LOG_ADDR_TV, &[MSG_IMAGE_VIEW_ON], None)
                .and_then(|_| self.send(BROADCAST, &[MSG_ACTIVE_SOURCE, phys[0], phys[1]], None))
        } else {
            self.send(LOG_ADDR_TV, &[MSG_STANDBY], None)
        };
        match done {
            Ok(_) => {
                self.set_active(on);
                tracing::info!(device = self.device, on, "cec: the TV was told");
                true
            }
            Err(err) => {
                tracing::debug!(device = self.device, on, %err, "cec: the TV did not take it");
                self.report.send(|s| s.unanswered += 1);
                false
            }
        }
    }

    fn set_active(&mut self, active: bool) {
        self.active = active;
        self.report.send(move |s| s.active_source = active);
    }

    /// Ask the TV for its power; said to the loop.
    fn ask_power(&mut self) -> Option<TvPower> {
        let power = self
            .send(LOG_ADDR_TV, &[MSG_GIVE_DEVICE_POWER_STATUS], Some(MSG_REPORT_POWER_STATUS))
            .ok()
            .and_then(|m| TvPower::from_operand(m.msg[2]));
        tracing::info!(device = self.device, tv_power = ?power, "cec: the TV's power");
        self.report.send(move |s| s.tv_power = power);
        power
    }

    /// Answer what the kernel's core passed on.
    fn follow(&mut self, msg: &CecMsg) {
        if msg.len < 2 {
            return;
        }
        let (from, to, opcode) = (msg.msg[0] >> 4, msg.msg[0] & 15, msg.msg[1]);
        let phys = self.phys.to_be_bytes();
        match opcode {
            MSG_GIVE_DEVICE_POWER_STATUS if to != BROADCAST => {
                let _ = self.send(from, &[MSG_REPORT_POWER_STATUS, if self.on { 0 } else { 1 }], None);
            }
            MSG_REQUEST_ACTIVE_SOURCE if self.active => {
                let _ = self.send(BROADCAST, &[MSG_ACTIVE_SOURCE, phys[0], phys[1]], None);
            }
            MSG_SET_STREAM_PATH if msg.len >= 4 && msg.msg[2..4] == phys && self.on => {
                self.set_active(true);
                let _ = self.send(BROADCAST, &[MSG_ACTIVE_SOURCE, phys[0], phys[1]], None);
            }
            MSG_ACTIVE_SOURCE if msg.len >= 4 && msg.msg[2..4] != phys => self.set_active(false),
            MSG_REPORT_POWER_STATUS if from == LOG_ADDR_TV && msg.len >= 3 => {
                let power = TvPower::from_operand(msg.msg[2]);
                self.report.send(move |s| s.tv_power = power);
            }
            MSG_STANDBY if from == LOG_ADDR_TV => {
                self.report.send(|s| s.tv_power = Some(TvPower::Standby));
            }
            // Replies, aborts and broadcasts need no answer; anything else asked of vitrine is
            // not something it does.
            MSG_FEATURE_ABORT | MSG_REPORT_POWER_STATUS | MSG_ACTIVE_SOURCE => {}
            _ if to != BROADCAST => {
                let _ = self.send(from, &[MSG_FEATURE_ABORT, opcode, ABORT_UNRECOGNIZED_OP], None);
            }
            _ => {}
        }
    }
}
