//! Timestamps as the API writes them (`2026-12-07T17:42:44.154Z`: UTC, milliseconds), and the
//! clock the fake stamps its rows with.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch as `2026-12-07T17:42:44.154Z`.
pub fn timestamp(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil(days);
    let seconds = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        seconds / 3_600,
        seconds % 3_600 / 60,
        seconds % 60,
        ms_of_day % 1000
    )
}

/// A millisecond clock for row writes: the real time, but strictly later than its last tick.
pub(crate) struct Clock {
    last: i64,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock { last: i64::MIN }
    }
    /// The time of a new write, in milliseconds since the Unix epoch.
    pub(crate) fn tick(&mut self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.last = now.max(self.last.saturating_add(1));
        self.last
    }
}

/// The civil date of a day since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}
