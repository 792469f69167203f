//! Small formatting helpers shared by the sinks: durations a person reads,
//! RFC 3339 wall-clock times, and the monotonic -> wall clock conversion.

use std::fmt::Write as _;

use chrono::DateTime;

/// `850ns`, `84.2us`, `1.23ms`, `2.500s`: three significant digits, unit
/// picked so the number stays short.
pub fn duration(ns: u64) -> String {
    let mut s = String::with_capacity(10);
    write_duration(&mut s, ns);
    s
}

/// [`duration`] appended to `out`, in integer arithmetic (rounding half
/// up): it runs for every hop of every packet printed.
pub fn write_duration(out: &mut String, ns: u64) {
    if ns < 1_000 {
        let _ = write!(out, "{ns}ns");
    } else if ns < 1_000_000 {
        scaled(out, ns, 1_000, "us");
    } else if ns < 1_000_000_000 {
        scaled(out, ns, 1_000_000, "ms");
    } else {
        let ms = (ns + 500_000) / 1_000_000;
        let _ = write!(out, "{}.{:03}s", ms / 1000, ms % 1000);
    }
}

/// `ns / unit` with 2, 1 or 0 decimals: the most that keeps three
/// significant digits after rounding.
fn scaled(out: &mut String, ns: u64, unit: u64, name: &str) {
    for (decimals, step) in [(2, unit / 100), (1, unit / 10), (0, unit)] {
        let v = (ns + step / 2) / step; // in steps, rounded half up
        if v >= 1000 && decimals > 0 {
            continue;
        }
        let _ = match decimals {
            2 => write!(out, "{}.{:02}{name}", v / 100, v % 100),
            1 => write!(out, "{}.{}{name}", v / 10, v % 10),
            _ => write!(out, "{v}{name}"),
        };
        return;
    }
}

/// Nanoseconds since the Unix epoch for a CLOCK_MONOTONIC timestamp, given
/// `offset_ns` = CLOCK_REALTIME - CLOCK_MONOTONIC.
pub fn mono_to_wall_ns(ts_ns: u64, offset_ns: i64) -> i128 {
    ts_ns as i128 + offset_ns as i128
}

/// RFC 3339 in UTC with nanoseconds, e.g. `2025-01-02T03:04:05.123456789Z`.
/// Times chrono cannot represent fall back to the epoch rather than failing:
/// a bad clock offset must not stop a trace.
pub fn rfc3339_ns(wall_ns: i128) -> String {
    let mut s = String::with_capacity(30);
    write_rfc3339_ns(&mut s, wall_ns);
    s
}

/// [`rfc3339_ns`] appended to `out`. Hand-rolled (days -> civil date,
/// Hinnant's algorithm): it runs once per emitted packet, and chrono's
/// strftime machinery costs more than building the rest of a timeline.
/// Years outside 0..=9999 clamp to the epoch, as [`rfc3339_ns`] promises.
pub fn write_rfc3339_ns(out: &mut String, wall_ns: i128) {
    let mut secs = wall_ns.div_euclid(1_000_000_000);
    let nanos = wall_ns.rem_euclid(1_000_000_000) as u32;
    // 0000-01-01 .. 9999-12-31
    if !(-62_167_219_200..=253_402_300_799).contains(&secs) {
        secs = 0;
    }
    let days = secs.div_euclid(86_400) as i64;
    let sod = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + if month <= 2 { 1 } else { 0 }) as u32;
    // Digits written by hand: `write!` with padded fields was 5% of the
    // reader's time following iperf3 (one call per emitted packet).
    let mut b = *b"0000-00-00T00:00:00.000000000Z";
    digits(&mut b[0..4], year);
    digits(&mut b[5..7], month);
    digits(&mut b[8..10], day);
    digits(&mut b[11..13], sod / 3600);
    digits(&mut b[14..16], sod / 60 % 60);
    digits(&mut b[17..19], sod % 60);
    digits(&mut b[20..29], nanos);
    // All ASCII.
    out.push_str(std::str::from_utf8(&b).unwrap_or_default());
}

/// `v` as zero-padded decimal filling `out` (its high digits dropped if
/// it does not fit, which the callers' ranges rule out).
fn digits(out: &mut [u8], mut v: u32) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// The inverse of [`rfc3339_ns`] (accepts any RFC 3339 offset).
pub fn parse_rfc3339_ns(s: &str) -> Option<i128> {
    let dt = DateTime::parse_from_rfc3339(s).ok()?;
    Some(dt.timestamp() as i128 * 1_000_000_000 + dt.timestamp_subsec_nanos() as i128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(duration(0), "0ns");
        assert_eq!(duration(850), "850ns");
        assert_eq!(duration(1_234), "1.23us");
        assert_eq!(duration(84_200), "84.2us");
        assert_eq!(duration(999_499), "999us");
        assert_eq!(duration(1_230_000), "1.23ms");
        assert_eq!(duration(2_500_000_000), "2.500s");
        assert_eq!(duration(9_994), "9.99us");
        assert_eq!(duration(9_996), "10.0us");
        assert_eq!(duration(10_050), "10.1us");
        assert_eq!(duration(12_345_678), "12.3ms");
        assert_eq!(duration(345_678_901), "346ms");
        assert_eq!(duration(61_234_567_890), "61.235s");
    }

    #[test]
    fn hand_rolled_dates_agree_with_chrono() {
        use chrono::{SecondsFormat, Utc};
        // Leap days, century rules, the epoch, before it, far ahead.
        for secs in [
            0i64,
            -1,
            951_782_400,
            4_107_542_400,
            1_709_208_000,
            1_709_251_199,
            253_402_300_799,
            -62_167_219_200,
        ] {
            for nanos in [0u32, 1, 999_999_999] {
                let want = DateTime::<Utc>::from_timestamp(secs, nanos)
                    .map(|d| d.to_rfc3339_opts(SecondsFormat::Nanos, true))
                    .unwrap_or_default();
                assert_eq!(
                    rfc3339_ns(secs as i128 * 1_000_000_000 + nanos as i128),
                    want,
                    "{secs}.{nanos}"
                );
            }
        }
        // Unrepresentable: the epoch (with the nanoseconds), not a panic.
        assert!(rfc3339_ns(i128::MAX).starts_with("1970-01-01T00:00:00."));
    }

    #[test]
    fn wall_clock_is_rfc3339_with_nanoseconds_and_round_trips() {
        // 2024-02-29T12:00:00Z = 1709208000 s; monotonic 5 s + offset.
        let offset = 1_709_208_000_000_000_000i64 - 5_000_000_000;
        let wall = mono_to_wall_ns(5_000_000_123, offset);
        let s = rfc3339_ns(wall);
        assert_eq!(s, "2024-02-29T12:00:00.000000123Z");
        assert_eq!(parse_rfc3339_ns(&s), Some(wall));
        assert_eq!(parse_rfc3339_ns("not a time"), None);
    }
}
