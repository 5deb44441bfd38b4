//! Checking untrusted JSON text without building it: full RFC 8259 validation, nesting bounded
//! by an explicit stack (no recursion, so no stack overflow on hostile input), and the byte
//! offset of the first fault. Also splits a checked object into its top-level members.

use std::ops::Range;

use crate::pattern::skip;

/// Why text is not acceptable JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not valid JSON at byte {offset}: {reason}")]
pub struct JsonError {
    pub offset: usize,
    pub reason: String,
}

fn fail<T>(offset: usize, reason: impl Into<String>) -> Result<T, JsonError> {
    Err(JsonError { offset, reason: reason.into() })
}

#[derive(Clone, Copy, PartialEq)]
enum Frame {
    Object,
    Array,
}

/// Validates `text` as one JSON value nested at most `max_depth` levels.
pub fn check(text: &[u8], max_depth: usize) -> Result<(), JsonError> {
    let b = text;
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = ws(b, 0);
    // After a value: expect ',' or a closing bracket (or the end at depth 0).
    loop {
        // Read one value starting at i.
        match b.get(i) {
            None => return fail(i, "unexpected end of input, expected a value"),
            Some(b'{') | Some(b'[') => {
                if stack.len() >= max_depth {
                    return fail(i, format!("nesting deeper than {max_depth} levels"));
                }
                let frame = if b[i] == b'{' { Frame::Object } else { Frame::Array };
                stack.push(frame);
                i = ws(b, i + 1);
                let close = if frame == Frame::Object { b'}' } else { b']' };
                if b.get(i) == Some(&close) {
                    stack.pop();
                    i += 1;
                } else {
                    if frame == Frame::Object {
                        i = key(b, i)?;
                    }
                    continue;
                }
            }
            Some(b'"') => i = string(b, i + 1)?,
            Some(b't') => i = word(b, i, b"true")?,
            Some(b'f') => i = word(b, i, b"false")?,
            Some(b'n') => i = word(b, i, b"null")?,
            Some(b'-' | b'0'..=b'9') => i = number(b, i)?,
            Some(&c) => return fail(i, format!("unexpected character {}, expected a value", shown(c))),
        }
        // The value ended at i: close containers or move to the next member.
        loop {
            i = ws(b, i);
            let Some(&frame) = stack.last() else {
                return if i == b.len() { Ok(()) } else { fail(i, "unexpected text after the JSON value") };
            };
            let close = if frame == Frame::Object { b'}' } else { b']' };
            match b.get(i) {
                Some(b',') => {
                    i = ws(b, i + 1);
                    if frame == Frame::Object {
                        i = key(b, i)?;
                    }
                    break;
                }
                Some(&c) if c == close => {
                    stack.pop();
                    i += 1;
                }
                Some(&c) => {
                    let want = if frame == Frame::Object { "',' or '}'" } else { "',' or ']'" };
                    return fail(i, format!("unexpected character {}, expected {want}", shown(c)));
                }
                None => return fail(i, "unexpected end of input inside an object or array"),
            }
        }
    }
}

fn shown(c: u8) -> String {
    if c.is_ascii_graphic() { format!("'{}'", c as char) } else { format!("byte 0x{c:02x}") }
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(i) {
        i += 1;
    }
    i
}

/// A member key and its colon; returns the position of the value.
fn key(b: &[u8], i: usize) -> Result<usize, JsonError> {
    if b.get(i) != Some(&b'"') {
        return fail(i, "expected a string key");
    }
    let j = ws(b, string(b, i + 1)?);
    if b.get(j) != Some(&b':') {
        return fail(j, "expected ':' after a key");
    }
    Ok(ws(b, j + 1))
}

fn word(b: &[u8], i: usize, w: &[u8]) -> Result<usize, JsonError> {
    if b[i..].starts_with(w) { Ok(i + w.len()) } else { fail(i, "unrecognized token") }
}

fn number(b: &[u8], mut i: usize) -> Result<usize, JsonError> {
    let digits = |b: &[u8], mut i: usize| {
        let s = i;
        while let Some(b'0'..=b'9') = b.get(i) {
            i += 1;
        }
        (i, i > s)
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(b, i).0,
        _ => return fail(i, "invalid number"),
    }
    if b.get(i) == Some(&b'.') {
        let (j, any) = digits(b, i + 1);
        if !any {
            return fail(j, "invalid number: expected a digit after '.'");
        }
        i = j;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let (j, any) = digits(b, i);
        if !any {
            return fail(j, "invalid number: expected a digit in the exponent");
        }
        i = j;
    }
    Ok(i)
}

/// `i` is just past the opening quote; returns the position just past the closing quote.
fn string(b: &[u8], mut i: usize) -> Result<usize, JsonError> {
    let start = i;
    loop {
        match b.get(i) {
            None => return fail(i, "unterminated string"),
            Some(b'"') => break,
            Some(b'\\') => match b.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u') => {
                    let hex =
                        b.get(i + 2..i + 6).ok_or(JsonError { offset: i, reason: "truncated \\u escape".into() })?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return fail(i, "invalid \\u escape");
                    }
                    i += 6;
                }
                _ => return fail(i, "invalid escape in a string"),
            },
            Some(0x00..=0x1f) => return fail(i, "control character in a string"),
            Some(_) => i += 1,
        }
    }
    if let Err(e) = std::str::from_utf8(&b[start..i]) {
        return fail(start + e.valid_up_to(), "invalid UTF-8 in a string");
    }
    Ok(i + 1)
}

/// The top-level members of a checked JSON object: each key (unescaped) and the byte range of
/// its value. Fails if the text is not an object.
pub fn members(text: &[u8]) -> Result<Vec<(String, Range<usize>)>, JsonError> {
    let b = text;
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return fail(i, "expected a JSON object");
    }
    let mut out = Vec::new();
    i = ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Ok(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return fail(i, "expected a string key");
        }
        let kstart = i;
        let kend = string(b, i + 1)?;
        let name: String = serde_json::from_slice(&b[kstart..kend])
            .map_err(|e| JsonError { offset: kstart, reason: e.to_string() })?;
        i = ws(b, kend);
        if b.get(i) != Some(&b':') {
            return fail(i, "expected ':' after a key");
        }
        i = ws(b, i + 1);
        let vstart = i;
        let vend = value_end(b, i)?;
        out.push((name, vstart..vend));
        i = ws(b, vend);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b'}') => return Ok(out),
            _ => return fail(i, "expected ',' or '}'"),
        }
    }
}

/// The end of the value starting at `i` (skipped, not parsed).
fn value_end(b: &[u8], i: usize) -> Result<usize, JsonError> {
    match b.get(i) {
        Some(b'"') => string(b, i + 1),
        Some(b'{' | b'[') => skip::container(b, i + 1).map_err(|r| JsonError { offset: i, reason: r.into() }),
        Some(_) => {
            let mut j = i;
            while let Some(c) = b.get(j) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                    break;
                }
                j += 1;
            }
            Ok(j)
        }
        None => fail(i, "unexpected end of input"),
    }
}

/// The elements of a checked JSON array: the byte range of each.
pub fn elements(text: &[u8]) -> Result<Vec<Range<usize>>, JsonError> {
    let b = text;
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return fail(i, "expected a JSON array");
    }
    let mut out = Vec::new();
    i = ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Ok(out);
    }
    loop {
        let end = value_end(b, i)?;
        out.push(i..end);
        i = ws(b, end);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b']') => return Ok(out),
            _ => return fail(i, "expected ',' or ']'"),
        }
    }
}

/// Decodes a JSON string body with escapes into `out` as UTF-8.
pub(crate) fn unescape(raw: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    out.clear();
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *raw.get(i + 1).ok_or("bad escape")?;
        i += 2;
        let ch = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(raw.get(i..i + 4))?;
                i += 4;
                // A lone surrogate is valid JSON text but no character: it reads as U+FFFD.
                let lo = if (0xD800..0xDC00).contains(&hi) && raw.get(i..i + 2) == Some(b"\\u") {
                    hex4(raw.get(i + 2..i + 6)).ok().filter(|lo| (0xDC00..0xE000).contains(lo))
                } else {
                    None
                };
                match lo {
                    Some(lo) => {
                        i += 6;
                        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)).unwrap_or('\u{fffd}')
                    }
                    None => char::from_u32(hi).unwrap_or('\u{fffd}'),
                }
            }
            _ => return Err("invalid escape in a string"),
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    }
    Ok(())
}

fn hex4(h: Option<&[u8]>) -> Result<u32, &'static str> {
    let h = h.ok_or("truncated \\u escape")?;
    let s = std::str::from_utf8(h).map_err(|_| "invalid \\u escape")?;
    u32::from_str_radix(s, 16).map_err(|_| "invalid \\u escape")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_json_and_rejects_the_rest() {
        for ok in [r#"{}"#, r#"[]"#, r#"{"a":[1,-2.5e3,"x\u00e9\n",true,false,null,{}]}"#, " 0 ", r#""\ud83d""#] {
            assert!(check(ok.as_bytes(), 100).is_ok(), "{ok}");
        }
        for bad in [
            r#"{"a":1,}"#,
            r#"[1 2]"#,
            r#"{"a" 1}"#,
            "01",
            "1.",
            "[",
            r#"{"a":tru}"#,
            "\"\\x\"",
            "{} {}",
            "",
            "\"a\u{1}\"",
        ] {
            assert!(check(bad.as_bytes(), 100).is_err(), "{bad}");
        }
        assert_eq!(check(b"[1,}", 10).unwrap_err().offset, 3);
    }

    #[test]
    fn bounds_depth_without_recursion() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let e = check(deep.as_bytes(), 1000).unwrap_err();
        assert_eq!(e.offset, 1000);
        assert!(check(("[".repeat(1000) + &"]".repeat(1000)).as_bytes(), 1000).is_ok());
    }

    #[test]
    fn rejects_invalid_utf8() {
        assert!(check(b"\"\xff\"", 10).is_err());
    }

    #[test]
    fn splits_top_level_members() {
        let t = br#"{ "pattern": {"a":["x"]}, "event" : {"a":"x"} , "n": 5 }"#;
        let m = members(t).unwrap();
        let got: Vec<(&str, &[u8])> = m.iter().map(|(k, r)| (k.as_str(), &t[r.clone()])).collect();
        assert_eq!(got, vec![("pattern", &br#"{"a":["x"]}"#[..]), ("event", br#"{"a":"x"}"#), ("n", b"5")]);
    }

    #[test]
    fn splits_array_elements() {
        let t = br#"[ 1e999 , {"a":[1]}, "x,y" ,[]]"#;
        let got: Vec<&[u8]> = elements(t).unwrap().into_iter().map(|r| &t[r]).collect();
        assert_eq!(got, vec![&b"1e999"[..], br#"{"a":[1]}"#, br#""x,y""#, b"[]"]);
    }
}
