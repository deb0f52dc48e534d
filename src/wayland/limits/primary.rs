//! The primary selection (middle-click paste) under the clipboard's limits: its sources count
//! with the clipboard's (`DATA_SOURCES`), and what each offers is bounded like theirs.

use smithay::reexports::wayland_protocols::wp::primary_selection::zv1::server::zwp_primary_selection_device_manager_v1::{
    self as manager, ZwpPrimarySelectionDeviceManagerV1,
};
use smithay::reexports::wayland_protocols::wp::primary_selection::zv1::server::zwp_primary_selection_device_v1::ZwpPrimarySelectionDeviceV1;
use smithay::reexports::wayland_protocols::wp::primary_selection::zv1::server::zwp_primary_selection_source_v1::{
    self as source, ZwpPrimarySelectionSourceV1,
};
use smithay::reexports::wayland_server::backend::ClientId;
use smithay::reexports::wayland_server::{delegate_dispatch, delegate_global_dispatch, Client, DataInit, Dispatch};
use smithay::reexports::wayland_server::{DisplayHandle, Resource};
use smithay::wayland::selection::primary_selection::{
    PrimaryDeviceManagerGlobalData, PrimaryDeviceUserData, PrimarySelectionState, PrimarySourceUserData,
};

use super::{count, down, refuse, usage, with_usage, DATA_SOURCES, MIME_TYPES, MIME_TYPE_BYTES};
use crate::state::State;

impl Dispatch<ZwpPrimarySelectionDeviceManagerV1, ()> for State {
    fn request(
        state: &mut State,
        client: &Client,
        resource: &ZwpPrimarySelectionDeviceManagerV1,
        request: manager::Request,
        data: &(),
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        let source = matches!(request, manager::Request::CreateSource { .. });
        <PrimarySelectionState as Dispatch<ZwpPrimarySelectionDeviceManagerV1, (), State>>::request(
            state, client, resource, request, data, dh, init,
        );
        if source {
            count(dh, client, |u| &u.data_sources, &DATA_SOURCES);
        }
    }
}

impl Dispatch<ZwpPrimarySelectionSourceV1, PrimarySourceUserData> for State {
    fn request(
        state: &mut State,
        client: &Client,
        resource: &ZwpPrimarySelectionSourceV1,
        request: source::Request,
        data: &PrimarySourceUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        if let source::Request::Offer { mime_type } = &request {
            if mime_type.len() > MIME_TYPE_BYTES.max {
                return refuse(dh, client, &MIME_TYPE_BYTES);
            }
            let offered = usage(client).map_or(0, |u| {
                let mut offers = u.primary_offers.lock().unwrap_or_else(|e| e.into_inner());
                let n = offers.entry(resource.id().protocol_id()).or_default();
                *n += 1;
                *n
            });
            if offered > MIME_TYPES.max {
                return refuse(dh, client, &MIME_TYPES);
            }
        }
        <PrimarySelectionState as Dispatch<ZwpPrimarySelectionSourceV1, PrimarySourceUserData, State>>::request(
            state, client, resource, request, data, dh, init,
        );
    }

    fn destroyed(
        state: &mut State,
        client: ClientId,
        resource: &ZwpPrimarySelectionSourceV1,
        data: &PrimarySourceUserData,
    ) {
        with_usage(&state.core.display_handle.clone(), client.clone(), |u| {
            down(&u.data_sources);
            u.primary_offers.lock().unwrap_or_else(|e| e.into_inner()).remove(&resource.id().protocol_id());
        });
        <PrimarySelectionState as Dispatch<ZwpPrimarySelectionSourceV1, PrimarySourceUserData, State>>::destroyed(
            state, client, resource, data,
        )
    }
}

delegate_global_dispatch!(State: [ZwpPrimarySelectionDeviceManagerV1: PrimaryDeviceManagerGlobalData] => PrimarySelectionState);
delegate_dispatch!(State: [ZwpPrimarySelectionDeviceV1: PrimaryDeviceUserData] => PrimarySelectionState);
