//! Formatting without the heap: the render path runs every tick, so numbers
//! and labels are written into fixed-size stack buffers instead of `String`s.

use std::fmt::{self, Write};

/// A string of at most `N` bytes on the stack. Writes past the end are cut at
/// a character boundary rather than failing, because a cut label is better
/// than none on a narrow terminal.
pub struct StackStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackStr<N> {
    pub fn new() -> Self {
        StackStr {
            buf: [0; N],
            len: 0,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 characters are ever copied in (see write_str).
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl<const N: usize> Default for StackStr<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Write for StackStr<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let mut take = s.len().min(room);
        while take > 0 && !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Formats `args` into a stack string (`sfmt!(64; "{} x", a)`).
#[macro_export]
#[doc(hidden)]
macro_rules! sfmt {
    ($n:literal; $($arg:tt)*) => {{
        let mut s = $crate::text::StackStr::<$n>::new();
        let _ = ::std::fmt::Write::write_fmt(&mut s, format_args!($($arg)*));
        s
    }};
}

/// A duration in nanoseconds, shown with a unit that keeps 3 significant
/// digits: `812ns`, `12.3µs`, `4.56ms`, `1.23s`. Honours width and alignment.
#[derive(Clone, Copy, Debug)]
pub struct Ns(pub u64);

impl fmt::Display for Ns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = StackStr::<24>::new();
        let n = self.0;
        let (v, unit) = if n < 1_000 {
            let _ = write!(s, "{n}ns");
            return f.pad(s.as_str());
        } else if n < 1_000_000 {
            (n as f64 / 1e3, "µs")
        } else if n < 1_000_000_000 {
            (n as f64 / 1e6, "ms")
        } else {
            (n as f64 / 1e9, "s")
        };
        let _ = if v < 10.0 {
            write!(s, "{v:.2}{unit}")
        } else if v < 100.0 {
            write!(s, "{v:.1}{unit}")
        } else {
            write!(s, "{v:.0}{unit}")
        };
        f.pad(s.as_str())
    }
}

/// The time-of-day part of an RFC 3339 timestamp, to the microsecond
/// (`2024-05-01T12:00:01.123456789Z` -> `12:00:01.123456`); `None` when the
/// text has no `T` separator.
pub fn time_of_day(rfc3339: &str) -> Option<&str> {
    let t = rfc3339.find('T')?;
    let rest = &rfc3339[t + 1..];
    let mut end = rest.len().min(15);
    while end > 0 && !rest.is_char_boundary(end) {
        end -= 1;
    }
    let s = &rest[..end];
    // Stop before a zone suffix when the fraction is short.
    let cut = s.find(['Z', '+', '-']).unwrap_or(s.len());
    Some(&s[..cut])
}

/// Width in terminal columns, counting each char as one column. Labels here
/// are kernel symbols, device names and numbers, all narrow.
pub fn width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_units() {
        assert_eq!(format!("{}", Ns(0)), "0ns");
        assert_eq!(format!("{}", Ns(812)), "812ns");
        assert_eq!(format!("{}", Ns(1_500)), "1.50µs");
        assert_eq!(format!("{}", Ns(12_345)), "12.3µs");
        assert_eq!(format!("{}", Ns(123_456)), "123µs");
        assert_eq!(format!("{}", Ns(4_560_000)), "4.56ms");
        assert_eq!(format!("{}", Ns(1_230_000_000)), "1.23s");
        assert_eq!(format!("{:>7}", Ns(812)), "  812ns");
    }

    #[test]
    fn stack_str_cuts_at_char_boundary() {
        let s = sfmt!(5; "abcµdef");
        assert_eq!(s.as_str(), "abcµ");
        let s = sfmt!(4; "abcµ");
        assert_eq!(s.as_str(), "abc");
    }

    #[test]
    fn time_of_day_forms() {
        assert_eq!(
            time_of_day("2024-05-01T12:00:01.123456789Z"),
            Some("12:00:01.123456")
        );
        assert_eq!(time_of_day("2024-05-01T12:00:01Z"), Some("12:00:01"));
        assert_eq!(
            time_of_day("2024-05-01T12:00:01.5+02:00"),
            Some("12:00:01.5")
        );
        assert_eq!(time_of_day(""), None);
    }
}
