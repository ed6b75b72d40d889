//! Timestamps as the API writes them (`2026-12-07T17:42:44.154Z`: UTC, milliseconds) and as
//! it reads them in a `$filter` literal (a Postgres timestamp: date, optional time with any
//! fraction of a second, optional zone), and the clock the fake stamps its rows with.

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

/// The instant a filter literal names, in microseconds since the Unix epoch (Postgres keeps
/// microseconds; a longer fraction is rounded). Accepts `YYYY-MM-DD`, then optionally `T` or a
/// space and `HH:MM[:SS[.fraction]]`, then optionally `Z` or an offset `±HH[[:]MM]`; no zone
/// means UTC. None for anything else (`'not-a-date'`, `''`): the server answers 500.
pub(crate) fn instant(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let mut at = 0;
    // `width` digits at `at` (None if there are not that many).
    let digits = |at: &mut usize, width: usize| -> Option<i64> {
        let part = b.get(*at..*at + width)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        *at += width;
        Some(part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let eat = |at: &mut usize, c: u8| -> bool {
        let hit = b.get(*at) == Some(&c);
        *at += usize::from(hit);
        hit
    };
    let year = digits(&mut at, 4)?;
    eat(&mut at, b'-').then_some(())?;
    let month = digits(&mut at, 2)?;
    eat(&mut at, b'-').then_some(())?;
    let day = digits(&mut at, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut micros = days_from_civil(year, month, day) * 86_400_000_000;
    if eat(&mut at, b'T') || eat(&mut at, b' ') {
        let hour = digits(&mut at, 2)?;
        eat(&mut at, b':').then_some(())?;
        let minute = digits(&mut at, 2)?;
        let mut second = 0;
        let mut fraction = 0;
        if eat(&mut at, b':') {
            second = digits(&mut at, 2)?;
            if eat(&mut at, b'.') {
                let start = at;
                while b.get(at).is_some_and(u8::is_ascii_digit) {
                    at += 1;
                }
                let all = &text[start..at];
                if all.is_empty() {
                    return None;
                }
                // Microseconds, rounded half up on the seventh digit.
                let mut padded: String = all.chars().chain("000000".chars()).take(7).collect();
                let round = padded.pop().map_or(0, |d| i64::from(d >= '5'));
                fraction = padded.parse::<i64>().ok()? + round;
            }
        }
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        micros += ((hour * 60 + minute) * 60 + second) * 1_000_000 + fraction;
    }
    let offset = match b.get(at) {
        None => 0,
        Some(b'Z' | b'z') => {
            at += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            at += 1;
            let hours = digits(&mut at, 2)?;
            let minutes = if at == b.len() {
                0
            } else {
                eat(&mut at, b':');
                digits(&mut at, 2)?
            };
            if hours > 15 || minutes > 59 {
                return None;
            }
            let offset = (hours * 60 + minutes) * 60_000_000;
            if sign == b'+' {
                offset
            } else {
                -offset
            }
        }
        Some(_) => return None,
    };
    (at == b.len()).then_some(micros - offset)
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

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day since 1970-01-01 (the inverse of `days_from_civil`).
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
