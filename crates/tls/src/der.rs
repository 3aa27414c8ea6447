//! A minimal DER reader: single-byte tags, definite lengths up to four bytes. Any input yields `None` or
//! an error, never a panic.

/// One DER element: (tag, content, rest). Single-byte tags only, which is all a Name uses.
pub(crate) fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

/// An OBJECT IDENTIFIER's content as dotted decimal.
pub(crate) fn dotted(oid: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for &b in oid {
        value = value.checked_mul(128)? | u64::from(b & 0x7F);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    if arcs.is_empty() {
        return None;
    }
    Some(arcs.iter().map(u64::to_string).collect::<Vec<_>>().join("."))
}

/// One DER element with its header: (tag, content, the whole element, rest).
pub(crate) type Raw<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// [`element`], with the whole element (header and content) as well.
pub(crate) fn element_raw(input: &[u8]) -> Option<Raw<'_>> {
    let (tag, content, rest) = element(input)?;
    let whole = input.get(..input.len() - rest.len())?;
    Some((tag, content, whole, rest))
}

/// A UTCTime (tag 0x17, `YYMMDDHHMMSSZ`) or GeneralizedTime (0x18, `YYYYMMDDHHMMSSZ`) as seconds since
/// the Unix epoch; RFC 5280 section 4.1.2.5 allows only these forms in certificates.
pub(crate) fn time(tag: u8, content: &[u8]) -> Option<u64> {
    let digits = content.strip_suffix(b"Z")?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = |d: &[u8]| d.iter().fold(0u64, |acc, &b| acc * 10 + u64::from(b - b'0'));
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy = number(&digits[..2]);
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (0x18, 14) => (number(&digits[..4]), &digits[4..]),
        _ => return None,
    };
    let (month, day) = (number(&rest[0..2]), number(&rest[2..4]));
    let (hour, minute, second) = (number(&rest[4..6]), number(&rest[6..8]), number(&rest[8..10]));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm); `None` before 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 { year.checked_sub(1)? } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_count_seconds_since_the_epoch() {
        assert_eq!(time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(time(0x17, b"260131120000Z"), Some(1_769_860_800));
        assert_eq!(time(0x18, b"20260131120000Z"), Some(1_769_860_800));
        assert_eq!(time(0x18, b"20000229235959Z"), Some(951_868_799));
        assert_eq!(time(0x17, b"2601311200Z"), None);
        assert_eq!(time(0x17, b"261331120000Z"), None);
        assert_eq!(time(0x17, b"26013112000+"), None);
    }

    #[test]
    fn oids_print_dotted() {
        assert_eq!(dotted(&[0x55, 0x04, 0x03]).as_deref(), Some("2.5.4.3"));
        assert_eq!(
            dotted(&[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x01]).as_deref(),
            Some("1.2.840.113549.1.9.1")
        );
    }
}
