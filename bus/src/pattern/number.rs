//! Numbers as EventBridge compares them: IEEE-754 doubles, the full finite range.

/// Parses a JSON number literal to a finite double. `None` when it overflows to infinity or
/// underflows to zero from a non-zero literal (event-ruler: "cannot compare number").
pub(crate) fn parse_finite(text: &str) -> Option<f64> {
    let v: f64 = text.parse().ok()?;
    if !v.is_finite() {
        return None;
    }
    if v == 0.0 && mantissa_has_nonzero_digit(text) {
        return None;
    }
    Some(v)
}

fn mantissa_has_nonzero_digit(text: &str) -> bool {
    text.bytes().take_while(|b| !matches!(b, b'e' | b'E')).any(|b| matches!(b, b'1'..=b'9'))
}

/// The key under which numbers compare equal: `5`, `5.0` and `5e0` share one; `-0` is `0`.
#[inline]
pub(crate) fn key(v: f64) -> u64 {
    if v == 0.0 { 0 } else { v.to_bits() }
}

/// Parses a number token from an event. The scanner only lets ASCII digits, signs, `.`, `e`
/// and `E` into a token, so it is valid UTF-8 by construction.
#[inline]
pub(crate) fn parse_event(raw: &[u8]) -> Option<f64> {
    debug_assert!(raw.is_ascii());
    // SAFETY: `raw` holds ASCII bytes only (see above), which is valid UTF-8.
    let text = unsafe { std::str::from_utf8_unchecked(raw) };
    let v: f64 = text.parse().ok()?;
    v.is_finite().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_edges() {
        assert_eq!(parse_finite("3.018e2"), Some(301.8));
        assert_eq!(parse_finite("1E309"), None);
        assert_eq!(parse_finite("2.0e422"), None);
        assert_eq!(parse_finite("1E-325"), None);
        assert_eq!(parse_finite("0e-999"), Some(0.0));
        assert_eq!(parse_finite("-0"), Some(-0.0));
        assert_eq!(key(-0.0), key(0.0));
        assert_eq!(key(parse_finite("5").unwrap()), key(parse_finite("5.0").unwrap()));
    }
}
