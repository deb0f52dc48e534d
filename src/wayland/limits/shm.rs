//! shm pools: counted, and their sizes summed, for as long as vitrine holds them. smithay keeps
//! a pool's file and its mapping while the pool or any buffer made from it lives, so a pool the
//! client destroyed still counts until the kernel says its descriptor is closed: otherwise a
//! client making a pool, one buffer and destroying the pool, over and over, would hold one
//! descriptor and one mapping per buffer, unbounded by the pool limit.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, RawFd};

use smithay::reexports::wayland_server::backend::{ClientId, ObjectId};
use smithay::reexports::wayland_server::protocol::__interfaces::WL_SHM_POOL_INTERFACE;
use smithay::reexports::wayland_server::protocol::wl_buffer::WlBuffer;
use smithay::reexports::wayland_server::protocol::wl_shm::{self, WlShm};
use smithay::reexports::wayland_server::protocol::wl_shm_pool::{self, WlShmPool};
use smithay::reexports::wayland_server::{Client, DataInit, Dispatch, DisplayHandle, Resource};
use smithay::wayland::shm::{ShmBufferUserData, ShmPoolUserData, ShmState};

use super::{count, down, refuse, usage, with_usage, Limit, Usage, BUFFERS, SHM_MIB, SHM_POOLS};
use crate::state::State;

/// A pool's file as vitrine holds it: its descriptor (the number smithay keeps it under, and
/// the file behind that number, since a closed number is soon reused) and its mapped size.
#[derive(Debug)]
pub(super) struct PoolFile {
    /// The pool, while the client has it; `None` once destroyed (its buffers may keep it).
    pool: Option<ObjectId>,
    fd: RawFd,
    file: (u64, u64),
    size: usize,
}

/// The device and inode of the file open at `fd`, if any.
fn file_at(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: fstat on a descriptor number fills a local struct; a closed number is an error.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

impl PoolFile {
    /// Whether vitrine may still hold it: a live pool does; a destroyed one while its number
    /// still names its file. (A number reused for the same file by a pool of another client
    /// keeps an entry a little longer: counting too much, never too little.)
    fn held(&self) -> bool {
        self.pool.is_some() || file_at(self.fd) == Some(self.file)
    }
}

/// Which limit the pools of `u` are over, if any: destroyed pools whose file is closed are
/// forgotten first (looked at only when over, so the checks cost nothing in the common case).
fn over(pools: &mut Vec<PoolFile>) -> Option<&'static Limit> {
    let check = |pools: &Vec<PoolFile>| {
        if pools.len() > SHM_POOLS.max {
            Some(&SHM_POOLS)
        } else if pools.iter().map(|p| p.size).sum::<usize>() > SHM_MIB.max << 20 {
            Some(&SHM_MIB)
        } else {
            None
        }
    };
    check(pools)?;
    pools.retain(PoolFile::held);
    check(pools)
}

fn pools_of(u: &Usage, f: impl FnOnce(&mut Vec<PoolFile>) -> Option<&'static Limit>) -> Option<&'static Limit> {
    u.pools.lock().ok().and_then(|mut pools| f(&mut pools))
}

// wl_shm: each new pool is recorded with its file (the pool is found among the client's
// objects once smithay made it: the request does not say its id).
impl Dispatch<WlShm, ()> for State {
    fn request(
        state: &mut State,
        client: &Client,
        resource: &WlShm,
        request: wl_shm::Request,
        data: &(),
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        let made = match &request {
            wl_shm::Request::CreatePool { fd, size, .. } => {
                file_at(fd.as_raw_fd()).map(|file| (fd.as_raw_fd(), file, (*size).max(0) as usize))
            }
            _ => None,
        };
        <ShmState as Dispatch<WlShm, (), State>>::request(state, client, resource, request, data, dh, init);
        let (Some((fd, file, size)), Some(u)) = (made, usage(client)) else { return };
        let limit = pools_of(u, |pools| {
            let known: HashSet<&ObjectId> = pools.iter().filter_map(|p| p.pool.as_ref()).collect();
            let mut new = None;
            let _ = dh.backend_handle().with_all_objects_for(client.id(), |id| {
                if id.interface().name == WL_SHM_POOL_INTERFACE.name && !known.contains(&id) {
                    new = Some(id);
                }
            });
            // smithay refused the pool (it could not be mapped): the client has its error.
            let id = new?;
            // The number is the new pool's now: whatever it named before was closed.
            pools.retain(|p| p.pool.is_some() || p.fd != fd);
            pools.push(PoolFile { pool: Some(id), fd, file, size });
            over(pools)
        });
        if let Some(limit) = limit {
            refuse(dh, client, limit);
        }
    }

    fn destroyed(state: &mut State, client: ClientId, resource: &WlShm, data: &()) {
        <ShmState as Dispatch<WlShm, (), State>>::destroyed(state, client, resource, data)
    }
}

impl Dispatch<WlShmPool, ShmPoolUserData> for State {
    fn request(
        state: &mut State,
        client: &Client,
        resource: &WlShmPool,
        request: wl_shm_pool::Request,
        data: &ShmPoolUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        let (resized, buffer) = match &request {
            wl_shm_pool::Request::Resize { size } => (Some((*size).max(0) as usize), false),
            wl_shm_pool::Request::CreateBuffer { .. } => (None, true),
            _ => (None, false),
        };
        <ShmState as Dispatch<WlShmPool, ShmPoolUserData, State>>::request(
            state, client, resource, request, data, dh, init,
        );
        if buffer {
            count(dh, client, |u| &u.buffers, &BUFFERS);
        }
        let (Some(size), Some(u)) = (resized, usage(client)) else { return };
        let limit = pools_of(u, |pools| {
            let id = resource.id();
            pools.iter_mut().find(|p| p.pool.as_ref() == Some(&id))?.size = size;
            over(pools)
        });
        if let Some(limit) = limit {
            refuse(dh, client, limit);
        }
    }

    fn destroyed(state: &mut State, client: ClientId, resource: &WlShmPool, data: &ShmPoolUserData) {
        with_usage(&state.core.display_handle.clone(), client.clone(), |u| {
            pools_of(u, |pools| {
                let id = resource.id();
                if let Some(p) = pools.iter_mut().find(|p| p.pool.as_ref() == Some(&id)) {
                    p.pool = None;
                }
                None
            });
        });
        <ShmState as Dispatch<WlShmPool, ShmPoolUserData, State>>::destroyed(state, client, resource, data)
    }
}

impl Dispatch<WlBuffer, ShmBufferUserData> for State {
    fn request(
        state: &mut State,
        client: &Client,
        resource: &WlBuffer,
        request: <WlBuffer as Resource>::Request,
        data: &ShmBufferUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        <ShmState as Dispatch<WlBuffer, ShmBufferUserData, State>>::request(
            state, client, resource, request, data, dh, init,
        );
    }

    fn destroyed(state: &mut State, client: ClientId, resource: &WlBuffer, data: &ShmBufferUserData) {
        with_usage(&state.core.display_handle.clone(), client.clone(), |u| down(&u.buffers));
        <ShmState as Dispatch<WlBuffer, ShmBufferUserData, State>>::destroyed(state, client, resource, data)
    }
}
