//! Value syntaxes of etcd's flags, which come from Go's `flag`, `strconv` and `time`
//! packages: booleans (`t`, `FALSE`, `1`, …), durations (`300ms`, `1.5h`, `2h45m`) and
//! the auto-compaction retention (a bare number, or a duration).

use std::time::Duration;

/// Go's `strconv.ParseBool`, which `flag.Bool` uses.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value {s:?}")),
    }
}

/// Go's `time.ParseDuration`, without negative durations (no etcd flag means anything by
/// one). A sequence of decimal numbers, each with an optional fraction and a unit
/// (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`); a bare `0` is allowed.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let mut s = text;
    let negative = if let Some(rest) = s.strip_prefix('-') {
        s = rest;
        true
    } else {
        s = s.strip_prefix('+').unwrap_or(s);
        false
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (int_part, rest) = s.split_at(int_len);
        s = rest;
        let mut frac_part = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            (frac_part, s) = rest.split_at(frac_len);
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        let nanos_per_unit: u128 = match unit {
            "" => return Err(format!("time: missing unit in duration {text:?}")),
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            _ => return Err(format!("time: unknown unit {unit:?} in duration {text:?}")),
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        // Digits past the 18th cannot change the result by a whole nanosecond for any
        // unit up to an hour (3.6e12 ns), so they are dropped to keep the sum in range.
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        let frac_nanos = if frac_digits.is_empty() {
            0
        } else {
            let numerator: u128 = frac_digits.parse().map_err(|_| invalid())?;
            numerator * nanos_per_unit / 10u128.pow(frac_digits.len() as u32)
        };
        total = whole
            .checked_mul(nanos_per_unit)
            .and_then(|n| n.checked_add(frac_nanos))
            .and_then(|n| n.checked_add(total))
            .ok_or_else(invalid)?;
    }
    // Go's durations are i64 nanoseconds.
    if total > i64::MAX as u128 {
        return Err(invalid());
    }
    if negative && total != 0 {
        return Err(format!("negative duration {text:?}"));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Which history `--auto-compaction-retention` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// `--auto-compaction-mode=periodic`: keep this much time of history.
    Periodic(Duration),
    /// `--auto-compaction-mode=revision`: keep this many revisions.
    Revision(u64),
}

/// `--auto-compaction-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionMode {
    Periodic,
    Revision,
}

/// etcd's rule for `--auto-compaction-retention`: a bare non-negative integer is hours in
/// periodic mode and revisions in revision mode; anything else is a Go duration (periodic
/// mode only: etcd would read "1h" as 3.6e12 revisions, mnemo refuses it). Zero turns
/// auto-compaction off (`None`).
pub fn parse_retention(mode: CompactionMode, text: &str) -> Result<Option<AutoCompaction>, String> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u64>() {
        if n == 0 {
            return Ok(None);
        }
        return Ok(Some(match mode {
            CompactionMode::Revision => AutoCompaction::Revision(n),
            CompactionMode::Periodic => {
                let secs = n
                    .checked_mul(3600)
                    .ok_or_else(|| format!("--auto-compaction-retention {n} hours is too long"))?;
                AutoCompaction::Periodic(Duration::from_secs(secs))
            }
        }));
    }
    if mode == CompactionMode::Revision {
        return Err(format!(
            "--auto-compaction-retention must be a number of revisions when \
             --auto-compaction-mode=revision (got {text:?})"
        ));
    }
    let d =
        parse_go_duration(text).map_err(|e| format!("error parsing CompactionRetention: {e}"))?;
    Ok((!d.is_zero()).then_some(AutoCompaction::Periodic(d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_bools() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Ok(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Ok(false));
        }
        assert!(parse_go_bool("yes").is_err());
        assert!(parse_go_bool("").is_err());
    }

    #[test]
    fn go_durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("-0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("100ms"), Ok(ms(100)));
        assert_eq!(parse_go_duration("+5s"), Ok(ms(5000)));
        assert_eq!(parse_go_duration("1.5h"), Ok(ms(5_400_000)));
        assert_eq!(parse_go_duration("2h45m"), Ok(ms(9_900_000)));
        assert_eq!(parse_go_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_go_duration("1.s"), Ok(ms(1000)));
        assert_eq!(parse_go_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_go_duration("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_go_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(
            parse_go_duration("0.123456789123456789123s"),
            Ok(Duration::from_nanos(123_456_789))
        );
        assert_eq!(
            parse_go_duration("abc"),
            Err("time: invalid duration \"abc\"".to_string())
        );
        assert_eq!(
            parse_go_duration("5"),
            Err("time: missing unit in duration \"5\"".to_string())
        );
        assert!(parse_go_duration("5d")
            .unwrap_err()
            .contains("unknown unit \"d\""));
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration(".s").is_err());
        assert!(parse_go_duration("-1s").is_err());
        assert!(parse_go_duration("3000000h").is_err());
        assert!(parse_go_duration("99999999999999999999999999999999999h").is_err());
    }

    #[test]
    fn retention_follows_etcd() {
        use AutoCompaction::*;
        use CompactionMode as M;
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(parse_retention(M::Periodic, "0"), Ok(None));
        assert_eq!(parse_retention(M::Periodic, "0s"), Ok(None));
        assert_eq!(parse_retention(M::Periodic, "1"), Ok(Some(Periodic(h(1)))));
        assert_eq!(
            parse_retention(M::Periodic, "72"),
            Ok(Some(Periodic(h(72))))
        );
        assert_eq!(
            parse_retention(M::Periodic, "5m"),
            Ok(Some(Periodic(Duration::from_secs(300))))
        );
        assert_eq!(
            parse_retention(M::Revision, "1000"),
            Ok(Some(Revision(1000)))
        );
        assert_eq!(parse_retention(M::Revision, "0"), Ok(None));
        assert!(parse_retention(M::Revision, "1h").is_err());
        assert_eq!(
            parse_retention(M::Periodic, "abc"),
            Err("error parsing CompactionRetention: time: invalid duration \"abc\"".to_string())
        );
    }
}
