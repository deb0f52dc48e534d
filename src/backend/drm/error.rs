//! What can go wrong on the DRM backend, with the kernel's errno kept: callers decide from it
//! whether to try again at the next vblank, plan anew, fall back to composition or give up.

use super::device::DeviceError;

#[derive(Debug, thiserror::Error)]
pub enum DrmError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// An ioctl or commit the kernel refused.
    #[error("{what}: {source}")]
    Kernel {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Something the driver does not offer: a property, a plane, a CRTC, a mode.
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Renderer(String),
    #[error("{0}")]
    Loop(String),
}

/// What to do about a refused operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The CRTC is busy with a previous commit (EBUSY): try at the next vblank.
    NextVblank,
    /// The hardware refused this configuration (EINVAL, ERANGE, ENOSPC, EOPNOTSUPP): plan anew,
    /// composite more.
    Replan,
    /// The device is gone (ENODEV, ENXIO): wait for it to come back.
    DeviceGone,
    /// DRM master was lost (EACCES, EPERM): wait for the seat to come back.
    NoMaster,
    /// Nothing to retry.
    GiveUp,
}

impl DrmError {
    pub fn kernel(what: String, source: std::io::Error) -> DrmError {
        DrmError::Kernel { what, source }
    }

    /// The kernel's errno, if the kernel said no.
    pub fn errno(&self) -> Option<i32> {
        match self {
            DrmError::Kernel { source, .. } => source.raw_os_error(),
            DrmError::Device(DeviceError::Open { source, .. } | DeviceError::Io { source, .. }) => {
                source.raw_os_error()
            }
            _ => None,
        }
    }

    pub fn recovery(&self) -> Recovery {
        match self.errno() {
            Some(libc::EBUSY | libc::EAGAIN | libc::EINTR) => Recovery::NextVblank,
            Some(libc::EINVAL | libc::ERANGE | libc::ENOSPC | libc::EOPNOTSUPP | libc::E2BIG) => Recovery::Replan,
            Some(libc::ENODEV | libc::ENXIO | libc::ENOENT) => Recovery::DeviceGone,
            Some(libc::EACCES | libc::EPERM) => Recovery::NoMaster,
            _ => Recovery::GiveUp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_errno_says_what_to_do() {
        let refused = |errno| DrmError::kernel("atomic commit".into(), std::io::Error::from_raw_os_error(errno));
        assert_eq!(refused(libc::EBUSY).recovery(), Recovery::NextVblank);
        assert_eq!(refused(libc::EINVAL).recovery(), Recovery::Replan);
        assert_eq!(refused(libc::ENODEV).recovery(), Recovery::DeviceGone);
        assert_eq!(refused(libc::EACCES).recovery(), Recovery::NoMaster);
        assert_eq!(refused(libc::EINVAL).errno(), Some(libc::EINVAL));
        assert_eq!(DrmError::Missing("no CRTC".into()).recovery(), Recovery::GiveUp);
        assert!(refused(libc::EINVAL).to_string().contains("Invalid argument"));
    }
}
