//! Skipping JSON values no pattern names, without parsing them: strings by searching for the
//! closing quote, containers by counting brackets with a 16-bytes-at-a-time scan. Skipped text
//! is checked for balance only; the bus validates every event in full when it is put.

use memchr::memchr2;

/// Reason a skip failed; the caller adds the offset.
pub(crate) type SkipError = &'static str;

/// `pos` is just past the opening quote; returns the position just past the closing quote and
/// whether the string held an escape.
#[inline]
pub(crate) fn string(b: &[u8], mut pos: usize) -> Result<(usize, bool), SkipError> {
    let mut escaped = false;
    loop {
        match memchr2(b'"', b'\\', &b[pos..]) {
            Some(i) if b[pos + i] == b'"' => return Ok((pos + i + 1, escaped)),
            Some(i) => {
                escaped = true;
                pos += i + 2;
                if pos > b.len() {
                    return Err("unterminated string");
                }
            }
            None => return Err("unterminated string"),
        }
    }
}

/// `pos` is just past an opening `{` or `[`; returns the position just past its closing pair.
#[inline]
pub(crate) fn container(b: &[u8], pos: usize) -> Result<usize, SkipError> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: SSE2 is part of the x86_64 baseline, so the intrinsics are always available.
        unsafe { container_sse2(b, pos) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        container_scalar(b, pos)
    }
}

/// Bytes that matter while skipping a container: quote, brackets and braces.
#[inline(always)]
fn structural(c: u8) -> bool {
    // `[`/`{` and `]`/`}` differ only in bit 0x20.
    c == b'"' || (c | 0x20) == b'{' || (c | 0x20) == b'}'
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn container_scalar(b: &[u8], mut pos: usize) -> Result<usize, SkipError> {
    let mut depth = 1usize;
    while pos < b.len() {
        let c = b[pos];
        pos += 1;
        if !structural(c) {
            continue;
        }
        match c {
            b'"' => pos = string(b, pos)?.0,
            b'{' | b'[' => depth += 1,
            _ => {
                depth -= 1;
                if depth == 0 {
                    return Ok(pos);
                }
            }
        }
    }
    Err("unterminated object or array")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
unsafe fn container_sse2(b: &[u8], mut pos: usize) -> Result<usize, SkipError> {
    use std::arch::x86_64::*;
    let mut depth = 1usize;
    let quote = _mm_set1_epi8(b'"' as i8);
    let bit = _mm_set1_epi8(0x20);
    let open = _mm_set1_epi8(b'{' as i8);
    let close = _mm_set1_epi8(b'}' as i8);
    'outer: while pos + 16 <= b.len() {
        // SAFETY: `pos + 16 <= b.len()`, and loadu has no alignment requirement.
        let v = unsafe { _mm_loadu_si128(b.as_ptr().add(pos) as *const __m128i) };
        let folded = _mm_or_si128(v, bit);
        let hits = _mm_or_si128(
            _mm_cmpeq_epi8(v, quote),
            _mm_or_si128(_mm_cmpeq_epi8(folded, open), _mm_cmpeq_epi8(folded, close)),
        );
        let mut mask = _mm_movemask_epi8(hits) as u32;
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            let at = pos + i;
            match b[at] {
                b'"' => {
                    pos = string(b, at + 1)?.0;
                    continue 'outer;
                }
                b'{' | b'[' => depth += 1,
                _ => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(at + 1);
                    }
                }
            }
            mask &= mask - 1;
        }
        pos += 16;
    }
    // The tail, shorter than one vector.
    while pos < b.len() {
        let c = b[pos];
        pos += 1;
        if !structural(c) {
            continue;
        }
        match c {
            b'"' => pos = string(b, pos)?.0,
            b'{' | b'[' => depth += 1,
            _ => {
                depth -= 1;
                if depth == 0 {
                    return Ok(pos);
                }
            }
        }
    }
    Err("unterminated object or array")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_nested_containers_with_tricky_strings() {
        let cases: &[&str] = &[
            r#"{"a":[1,2,{"b":"]}"}],"c":"\"}"}X"#,
            r#"[[[[[1.5,2.5,0.0],[3,4,0.0],[5,6,0.0],[7,8,0.0],[9,10,0.0],[11,12,0.0]]]]]X"#,
            r#"{"k":"\\","l":"\\\""}X"#,
            "[]X",
            "{}X",
        ];
        for c in cases {
            let b = c.as_bytes();
            assert_eq!(container(b, 1), Ok(b.len() - 1), "{c}");
            assert_eq!(container_scalar(b, 1), Ok(b.len() - 1), "{c}");
        }
    }

    #[test]
    fn reports_unterminated_input() {
        for c in [r#"{"a":[1,2"#, r#"{"a":"x"#, r#"["\"#] {
            assert!(container(c.as_bytes(), 1).is_err(), "{c}");
            assert!(container_scalar(c.as_bytes(), 1).is_err(), "{c}");
        }
    }
}
