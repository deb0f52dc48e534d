//! The daily display schedule: screens on during opening hours, off (DPMS) outside them, with
//! touch and pointer input ignored while off. Times are local (TZ or /etc/localtime).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// A time of day, seconds since midnight; written "HH:MM" or "HH:MM:SS".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeOfDay(u32);

const DAY: u32 = 24 * 3600;

impl TimeOfDay {
    pub fn seconds(self) -> u32 {
        self.0
    }
}

impl TryFrom<String> for TimeOfDay {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a time of day (HH:MM or HH:MM:SS, 00:00 to 23:59:59)");
        let parts: Vec<&str> = text.split(':').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
            return Err(bad());
        }
        let n: Vec<u32> = parts.iter().map(|p| p.parse::<u32>().map_err(|_| bad())).collect::<Result<_, _>>()?;
        let (h, m, s) = (n[0], n[1], n.get(2).copied().unwrap_or(0));
        if h > 23 || m > 59 || s > 59 {
            return Err(bad());
        }
        Ok(TimeOfDay(h * 3600 + m * 60 + s))
    }
}

impl From<TimeOfDay> for String {
    fn from(t: TimeOfDay) -> String {
        let (h, m, s) = (t.0 / 3600, t.0 / 60 % 60, t.0 % 60);
        if s == 0 {
            format!("{h:02}:{m:02}")
        } else {
            format!("{h:02}:{m:02}:{s:02}")
        }
    }
}

/// Opening hours: displays on from `on` to `off` every day. `off` before `on` spans midnight
/// (a bar open 18:00 to 02:00); equal times mean always on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hours {
    pub on: TimeOfDay,
    pub off: TimeOfDay,
}

impl Hours {
    /// Whether the displays are on at `now` (seconds since local midnight).
    pub fn is_on(&self, now: u32) -> bool {
        let (on, off, now) = (self.on.0, self.off.0, now % DAY);
        match on.cmp(&off) {
            std::cmp::Ordering::Equal => true,
            std::cmp::Ordering::Less => (on..off).contains(&now),
            std::cmp::Ordering::Greater => now >= on || now < off,
        }
    }

    /// Seconds from `now` until the next switch (on or off); `None` when always on.
    pub fn until_next_change(&self, now: u32) -> Option<u32> {
        if self.on == self.off {
            return None;
        }
        let next = if self.is_on(now) { self.off.0 } else { self.on.0 };
        Some((next + DAY - now % DAY) % DAY).map(|d| if d == 0 { DAY } else { d })
    }
}

/// Where the time of day comes from: the system's local time, or (for tests) a fake clock that
/// starts at a given time of day and runs at real speed (`VITRINE_FAKE_TIME=HH:MM:SS`).
#[derive(Debug, Clone)]
pub enum DayClock {
    Local,
    Fake { start: u32, at: std::time::Instant },
}

impl DayClock {
    pub fn from_env() -> Result<DayClock, String> {
        match std::env::var("VITRINE_FAKE_TIME") {
            Ok(text) => {
                let t = TimeOfDay::try_from(text).map_err(|e| format!("VITRINE_FAKE_TIME: {e}"))?;
                Ok(DayClock::Fake { start: t.0, at: std::time::Instant::now() })
            }
            Err(_) => Ok(DayClock::Local),
        }
    }

    /// Seconds since local midnight.
    pub fn now(&self) -> u32 {
        match self {
            DayClock::Fake { start, at } => (start + at.elapsed().as_secs() as u32) % DAY,
            DayClock::Local => local_seconds(SystemTime::now()),
        }
    }
}

/// Seconds since local midnight at `t` (localtime_r: TZ, else /etc/localtime).
fn local_seconds(t: SystemTime) -> u32 {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs() as libc::time_t;
    // SAFETY: localtime_r fills the struct it is given from a valid time_t.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        return (secs.rem_euclid(DAY as libc::time_t)) as u32;
    }
    (tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> TimeOfDay {
        TimeOfDay::try_from(text.to_string()).unwrap()
    }

    #[test]
    fn opening_hours_within_a_day_and_across_midnight() {
        let shop = Hours { on: t("07:30"), off: t("22:00") };
        assert!(!shop.is_on(t("07:29:59").seconds()));
        assert!(shop.is_on(t("07:30").seconds()));
        assert!(shop.is_on(t("21:59:59").seconds()));
        assert!(!shop.is_on(t("22:00").seconds()));
        assert_eq!(shop.until_next_change(t("21:00").seconds()), Some(3600));
        assert_eq!(shop.until_next_change(t("23:00").seconds()), Some(8 * 3600 + 1800));

        let bar = Hours { on: t("18:00"), off: t("02:00") };
        assert!(bar.is_on(t("23:00").seconds()) && bar.is_on(t("01:59").seconds()));
        assert!(!bar.is_on(t("02:00").seconds()) && !bar.is_on(t("17:59").seconds()));
        assert_eq!(bar.until_next_change(t("01:00").seconds()), Some(3600));

        let always = Hours { on: t("08:00"), off: t("08:00") };
        assert!(always.is_on(0) && always.until_next_change(0).is_none());
    }

    #[test]
    fn times_parse_strictly() {
        assert_eq!(t("00:00").seconds(), 0);
        assert_eq!(t("23:59:59").seconds(), DAY - 1);
        assert_eq!(String::from(t("07:05")), "07:05");
        assert_eq!(String::from(t("07:05:09")), "07:05:09");
        for bad in ["24:00", "7:00", "07:60", "07", "07:00:00:00", "ab:cd", ""] {
            let err = TimeOfDay::try_from(bad.to_string()).unwrap_err();
            assert!(err.contains("time of day"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_fake_clock_starts_where_it_is_told() {
        let clock = DayClock::Fake { start: t("21:59:58").seconds(), at: std::time::Instant::now() };
        assert!((t("21:59:58").seconds()..t("22:00").seconds()).contains(&clock.now()));
    }
}
