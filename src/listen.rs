//! Listening sockets on the loop (the Wayland socket, the control socket). Running out of
//! descriptors (EMFILE, ENFILE) or memory while accepting pauses that socket for a moment: the
//! connection waits in the kernel's backlog, vitrine neither stops nor spins on a socket that
//! stays readable, and says so once a minute.

use std::cell::Cell;
use std::io::{self, ErrorKind};
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use smithay::reexports::calloop::generic::Generic;
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::reexports::calloop::{Interest, Mode, PostAction, RegistrationToken};

use crate::state::{Core, State};

/// How long a socket that could not accept waits before it tries again.
pub const PAUSE: Duration = Duration::from_millis(250);
/// Connections accepted per turn of the loop: a storm of connections does not hold up the rest.
const BATCH: usize = 16;

/// Watch `listener`: `accept` takes one pending connection (None: none waiting), `serve` gets
/// each. `name` names the socket in the log.
pub fn watch<L, S>(
    core: &mut Core,
    name: &'static str,
    listener: L,
    accept: impl Fn(&L) -> io::Result<Option<S>> + 'static,
    mut serve: impl FnMut(&mut State, S) + 'static,
) -> Result<RegistrationToken, String>
where
    L: AsFd + 'static,
    S: 'static,
{
    let token: Rc<Cell<Option<RegistrationToken>>> = Rc::default();
    let own = token.clone();
    let mut logged: Option<Instant> = None;
    let inserted = core
        .loop_handle
        .insert_source(Generic::new(listener, Interest::READ, Mode::Level), move |_, listener, state| {
            for _ in 0..BATCH {
                match accept(listener) {
                    Ok(Some(stream)) => serve(state, stream),
                    Ok(None) => break,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        state.core.accept_pauses += 1;
                        let pauses = state.core.accept_pauses;
                        crate::state::log_rarely(&mut logged, || {
                            tracing::warn!(
                                socket = name,
                                err = %e,
                                pause_ms = PAUSE.as_millis() as u64,
                                pauses,
                                "cannot accept connections: paused, the connection waits in the backlog"
                            )
                        });
                        if let Some(token) = own.get() {
                            resume_later(&mut state.core, token, name);
                        }
                        return Ok(PostAction::Disable);
                    }
                }
            }
            Ok(PostAction::Continue)
        })
        .map_err(|e| format!("cannot watch the {name} socket: {e}"))?;
    token.set(Some(inserted));
    Ok(inserted)
}

fn resume_later(core: &mut Core, token: RegistrationToken, name: &'static str) {
    let armed = core.loop_handle.insert_source(Timer::from_duration(PAUSE), move |_, _, state| {
        if let Err(err) = state.core.loop_handle.enable(&token) {
            tracing::error!(socket = name, %err, "cannot watch the socket again");
        }
        TimeoutAction::Drop
    });
    if let Err(err) = armed {
        tracing::error!(socket = name, %err, "cannot arm the accept pause");
    }
}
