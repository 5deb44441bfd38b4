//! Case folding for `equals-ignore-case`: full Unicode upper-casing, so `straße` equals `STRASSE`.

/// Writes the upper-cased value into `out` (cleared first). Invalid UTF-8 is left as is.
#[inline]
pub(crate) fn upper_into(v: &[u8], out: &mut Vec<u8>) {
    out.clear();
    if v.is_ascii() {
        out.extend(v.iter().map(u8::to_ascii_uppercase));
    } else if let Ok(s) = std::str::from_utf8(v) {
        for c in s.chars().flat_map(char::to_uppercase) {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
    } else {
        out.extend_from_slice(v);
    }
}

pub(crate) fn upper(s: &str) -> Box<[u8]> {
    let mut out = Vec::with_capacity(s.len());
    upper_into(s.as_bytes(), &mut out);
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_unicode_upper_casing() {
        assert_eq!(&*upper("straße"), "STRASSE".as_bytes());
        assert_eq!(&*upper("école"), "ÉCOLE".as_bytes());
        assert_eq!(&*upper("bEaCh"), b"BEACH");
    }
}
