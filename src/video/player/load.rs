//! Reading the playlist: each item is opened and read on a thread of its own, a bounded number
//! of parts ahead; an item nothing here can play is reported and skipped.

use std::sync::mpsc::{Receiver, TryRecvError};

use super::*;

/// Parts of a file the reading thread may have read ahead and not yet handed over (a bound on
/// memory: a long clip is never held whole).
const READ_AHEAD: usize = 48;

/// What the reading thread sends: the file's parts, or why it cannot be played at all.
pub(super) type Reading = Receiver<Result<Loaded, DemuxError>>;

impl Player {
    /// Start reading the next playlist item on a thread of its own (file reads and index
    /// parsing are not work for the compositor's loop). Returns false at the end of the list.
    pub(super) fn start_load(&mut self) -> bool {
        if self.loader.is_some() || self.items.is_empty() {
            return self.loader.is_some();
        }

        if self.next_item >= self.items.len() {
            // Looping over a list whose every item failed would spin: stop instead.
            if !self.looping || self.failed_in_row >= self.items.len() {
                return false;
            }
            self.next_item = 0;
        }
        let path = self.items[self.next_item].clone();
        self.next_item += 1;
        // Bounded: the thread reads ahead at most READ_AHEAD parts, then waits for the player.
        let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD);
        let file = path.clone();
        let waker = self.waker.clone();
        let spawned = std::thread::Builder::new().name("vitrine-demux".into()).spawn(move || {
            crate::process::lower_thread_priority(crate::process::WORKER_NICE);
            let wake = || {
                if let Some(w) = &waker {
                    w.wake();
                }
            };
            // A closed channel (the item was skipped or replaced) stops the reading.
            let result = demux::stream(&file, &mut |part| {
                let sent = tx.send(Ok(part)).is_ok();
                wake();
                sent
            });
            if let Err(e) = result {
                let _ = tx.send(Err(e));
                wake();
            }
        });
        match spawned {
            Ok(_) => {
                self.loader = Some((path, rx));
                true
            }
            Err(e) => {
                self.record_error(format!("cannot start reading the next item: {e}"));
                false
            }
        }
    }

    /// Skip the item being read: it cannot be played.
    fn reject_item(&mut self, path: &std::path::Path, why: String) {
        self.loader = None;
        self.failed_in_row += 1;
        self.record_file_error(Some(path), format!("skipping playlist item: {why}"));
    }

    /// Once the item being read has its stream described, it joins the clip queue (or is
    /// reported and skipped when nothing here can play it).
    pub(super) fn poll_load(&mut self) {
        let Some((path, rx)) = &self.loader else { return };
        let path = path.clone();
        let info = match rx.try_recv() {
            Ok(Ok(Loaded::Header(info))) => info,
            Ok(Ok(_)) => return self.reject_item(&path, format!("{}: no stream description", path.display())),
            Ok(Err(e)) => return self.reject_item(&path, e.to_string()),
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => {
                return self.reject_item(&path, format!("{}: reading stopped", path.display()));
            }
        };
        let Some((_, rx)) = self.loader.take() else { return };
        let fps = info.fps.unwrap_or(25.0);
        // A looping playlist opens its items again and again: said once, then at debug level.
        let again = self.looping && self.opened.contains(&path);
        if !again {
            self.opened.push(path.clone());
        }
        let size = (info.width, info.height);
        if again {
            tracing::debug!(target: "video", file = %path.display(), ?size, fps, "playlist item opened again");
        } else {
            tracing::info!(target: "video", file = %path.display(), ?size, fps, "playlist item opened");
        }
        self.clips.push_back(Clip {
            path,
            codec: info.codec,
            units: VecDeque::new(),
            incoming: Some(rx),
            sent: 0,
            base: None,
            first_pts: Duration::ZERO,
            last_pts: Duration::ZERO,
            frame_time: Duration::from_secs_f64(1.0 / fps),
            fps,
            resync: false,
            colour: info.colour,
        });
    }

    /// Move what the front clip's reading thread has read into the clip, up to READ_AHEAD
    /// units. A damaged file is reported (its valid part plays); an unreadable one is skipped.
    pub(super) fn receive_units(&mut self) {
        let Some(clip) = self.clips.front_mut() else { return };
        let mut damage = None;
        while clip.units.len() < READ_AHEAD {
            let Some(rx) = &clip.incoming else { break };
            match rx.try_recv() {
                Ok(Ok(Loaded::Unit(unit))) => clip.units.push_back(unit),
                Ok(Ok(Loaded::Header(_))) => {}
                // Damage ends the file; so does an error (a container reader that gave up
                // midway) or the thread stopping.
                Ok(Ok(Loaded::Damage(e)) | Err(e)) => {
                    damage = Some(e);
                    clip.incoming = None;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => clip.incoming = None,
            }
        }
        let path = clip.path.clone();
        let read = clip.sent + clip.units.len();
        if clip.fully_read() && read == 0 {
            self.clips.pop_front();
            self.failed_in_row += 1;
            let why = damage.map(|e| format!(" ({e})")).unwrap_or_default();
            let err = format!("skipping playlist item: {}: no picture to play{why}", path.display());
            self.record_file_error(Some(&path), err);
        } else if let Some(e) = damage {
            self.record_file_error(Some(&path), format!("{e}; playing the {read} valid pictures"));
        }
    }
}
