//! Skipping JSON values no pattern names, without parsing them: strings by searching for the
//! closing quote, containers by counting brackets 64 bytes at a time. Skipped text
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
fn container_scalar(b: &[u8], pos: usize) -> Result<usize, SkipError> {
    tail(b, pos, 1)
}

/// Quote, opener and closer bits of the 16 bytes at `p`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn masks16(p: *const u8) -> (u32, u32, u32) {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees 16 readable bytes at `p`; loadu has no alignment needs.
    unsafe {
        let v = _mm_loadu_si128(p as *const __m128i);
        let folded = _mm_or_si128(v, _mm_set1_epi8(0x20));
        let q = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8))) as u32;
        let o = _mm_movemask_epi8(_mm_cmpeq_epi8(folded, _mm_set1_epi8(b'{' as i8))) as u32;
        let c = _mm_movemask_epi8(_mm_cmpeq_epi8(folded, _mm_set1_epi8(b'}' as i8))) as u32;
        (q, o, c)
    }
}

/// Skips 64 bytes at a time: when a block holds no quote and cannot close the container, its
/// depth change is the count of openers minus closers; otherwise its bits are walked in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
unsafe fn container_sse2(b: &[u8], mut pos: usize) -> Result<usize, SkipError> {
    let mut depth = 1usize;
    'outer: while pos + 64 <= b.len() {
        let p = b.as_ptr();
        // SAFETY: `pos + 64 <= b.len()`, so four 16-byte loads from `pos` stay in bounds.
        let (q, o, c) = unsafe {
            let (q0, o0, c0) = masks16(p.add(pos));
            let (q1, o1, c1) = masks16(p.add(pos + 16));
            let (q2, o2, c2) = masks16(p.add(pos + 32));
            let (q3, o3, c3) = masks16(p.add(pos + 48));
            let join = |a: u32, b: u32, c: u32, d: u32| {
                u64::from(a) | (u64::from(b) << 16) | (u64::from(c) << 32) | (u64::from(d) << 48)
            };
            (join(q0, q1, q2, q3), join(o0, o1, o2, o3), join(c0, c1, c2, c3))
        };
        if q == 0 && depth > c.count_ones() as usize {
            depth = depth + o.count_ones() as usize - c.count_ones() as usize;
            pos += 64;
            continue;
        }
        let mut m = q | o | c;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            let bit = 1u64 << i;
            if q & bit != 0 {
                pos = string(b, pos + i + 1)?.0;
                continue 'outer;
            } else if o & bit != 0 {
                depth += 1;
            } else {
                depth -= 1;
                if depth == 0 {
                    return Ok(pos + i + 1);
                }
            }
            m &= m - 1;
        }
        pos += 64;
    }
    tail(b, pos, depth)
}

/// The bytes after the last whole block, one at a time.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn tail(b: &[u8], mut pos: usize, mut depth: usize) -> Result<usize, SkipError> {
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

    use proptest::prelude::*;
    use serde_json::Value;

    fn doc() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            "[\\[\\]{}\"\\\\a-z0-9 ]{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 400, 12, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..12).prop_map(Value::Array),
                prop::collection::btree_map("[a-z\\]\\\"]{1,4}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn block_skip_agrees_with_the_scalar_skip(v in doc(), cut in any::<prop::sample::Index>(), drop in 0usize..3) {
            let text = format!("[{v},{v},{v}]X");
            let b = text.as_bytes();
            prop_assert_eq!(container(b, 1), Ok(b.len() - 1));
            prop_assert_eq!(container_scalar(b, 1), Ok(b.len() - 1));
            // Damaged text: both must give the same answer, whatever it is.
            let at = cut.index(b.len());
            let mut bad = b.to_vec();
            bad.drain(at..(at + drop).min(bad.len()));
            prop_assert_eq!(container(&bad, 1), container_scalar(&bad, 1));
        }
    }
}
