//! A small JSON reader for pattern text: keeps number literals as written, rejects duplicate
//! keys, bounds nesting, and reports line and column. Patterns are at most 2048 characters, so
//! a tree is cheap; events never go through here (see `scan.rs`).

use std::borrow::Cow;

/// Deepest nesting accepted in pattern text; EventBridge documents ~1000 levels for events.
pub(crate) const MAX_DEPTH: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    /// The literal exactly as written, e.g. `3.018e2`.
    Number(&'a str),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Keys in document order; duplicates are rejected while reading.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl Json<'_> {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

/// Why pattern text is not acceptable JSON, with where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error("not valid JSON at line {line} column {column}: {reason}")]
    Malformed { line: usize, column: usize, reason: String },
    #[error("duplicate key \"{key}\" at {path}")]
    DuplicateKey { key: String, path: String },
    #[error("nesting deeper than {MAX_DEPTH} levels at line {line} column {column}")]
    TooDeep { line: usize, column: usize },
}

pub(crate) fn parse(text: &str) -> Result<Json<'_>, SyntaxError> {
    let mut r = Reader { text, bytes: text.as_bytes(), pos: 0, path: Vec::new() };
    r.ws();
    let v = r.value(0)?;
    r.ws();
    if r.pos != r.bytes.len() {
        return Err(r.malformed("unexpected text after the JSON value"));
    }
    Ok(v)
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Keys leading to the current position, for duplicate-key messages.
    path: Vec<String>,
}

impl<'a> Reader<'a> {
    fn malformed(&self, reason: impl Into<String>) -> SyntaxError {
        let (line, column) = self.line_col();
        SyntaxError::Malformed { line, column, reason: reason.into() }
    }

    fn line_col(&self) -> (usize, usize) {
        let upto = &self.text.as_bytes()[..self.pos.min(self.bytes.len())];
        let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
        let start = upto.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&upto[start..]).chars().count() + 1;
        (line, column)
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Json<'a>, SyntaxError> {
        match self.peek() {
            None => Err(self.malformed("unexpected end of input, expected a value")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'n') => self.word("null", Json::Null),
            Some(_) => {
                let c = self.text[self.pos..].chars().next().unwrap_or('?');
                Err(self.malformed(format!("unexpected character '{c}', expected a value")))
            }
        }
    }

    fn word(&mut self, w: &str, v: Json<'a>) -> Result<Json<'a>, SyntaxError> {
        if self.bytes[self.pos..].starts_with(w.as_bytes()) {
            self.pos += w.len();
            Ok(v)
        } else {
            Err(self.malformed(format!("unrecognized token, expected `{w}`")))
        }
    }

    fn enter(&self, depth: usize) -> Result<(), SyntaxError> {
        if depth > MAX_DEPTH {
            let (line, column) = self.line_col();
            return Err(SyntaxError::TooDeep { line, column });
        }
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<Json<'a>, SyntaxError> {
        self.enter(depth)?;
        self.pos += 1;
        let mut members: Vec<(Cow<'a, str>, Json<'a>)> = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.malformed("expected a string key"));
            }
            let key = self.string()?;
            if members.iter().any(|(k, _)| *k == key) {
                return Err(SyntaxError::DuplicateKey { key: key.into_owned(), path: self.path_text() });
            }
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.malformed("expected ':' after a key"));
            }
            self.pos += 1;
            self.ws();
            self.path.push(key.to_string());
            let v = self.value(depth)?;
            self.path.pop();
            members.push((key, v));
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Object(members));
                }
                Some(_) => return Err(self.malformed("expected ',' or '}' in an object")),
                None => return Err(self.malformed("unexpected end of input inside an object")),
            }
        }
    }

    fn path_text(&self) -> String {
        if self.path.is_empty() { "the top level".to_owned() } else { self.path.join(".") }
    }

    fn array(&mut self, depth: usize) -> Result<Json<'a>, SyntaxError> {
        self.enter(depth)?;
        self.pos += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                Some(_) => return Err(self.malformed("expected ',' or ']' in an array")),
                None => return Err(self.malformed("unexpected end of input inside an array")),
            }
        }
    }

    fn number(&mut self) -> Result<Json<'a>, SyntaxError> {
        let start = self.pos;
        let b = self.bytes;
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = b.get(i) {
                    i += 1;
                }
            }
            _ => {
                self.pos = i;
                return Err(self.malformed("invalid number: expected a digit"));
            }
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !matches!(b.get(i), Some(b'0'..=b'9')) {
                self.pos = i;
                return Err(self.malformed("invalid number: expected a digit after '.'"));
            }
            while let Some(b'0'..=b'9') = b.get(i) {
                i += 1;
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if !matches!(b.get(i), Some(b'0'..=b'9')) {
                self.pos = i;
                return Err(self.malformed("invalid number: expected a digit in the exponent"));
            }
            while let Some(b'0'..=b'9') = b.get(i) {
                i += 1;
            }
        }
        self.pos = i;
        Ok(Json::Number(&self.text[start..i]))
    }

    fn string(&mut self) -> Result<Cow<'a, str>, SyntaxError> {
        self.pos += 1; // opening quote
        let start = self.pos;
        let b = self.bytes;
        // Fast path: no escapes, borrow the text.
        let mut i = start;
        while let Some(&c) = b.get(i) {
            match c {
                b'"' => {
                    self.pos = i + 1;
                    return Ok(Cow::Borrowed(&self.text[start..i]));
                }
                b'\\' => break,
                0x00..=0x1f => {
                    self.pos = i;
                    return Err(self.malformed("control character in a string"));
                }
                _ => i += 1,
            }
        }
        if i >= b.len() {
            self.pos = i;
            return Err(self.malformed("unexpected end of input inside a string"));
        }
        // Escapes: find the closing quote, then decode the whole body once.
        while let Some(&c) = b.get(i) {
            match c {
                b'"' => break,
                b'\\' => i += 2,
                0x00..=0x1f => {
                    self.pos = i;
                    return Err(self.malformed("control character in a string"));
                }
                _ => i += 1,
            }
        }
        if i >= b.len() {
            self.pos = b.len();
            return Err(self.malformed("unexpected end of input inside a string"));
        }
        let mut out = Vec::with_capacity(i - start);
        if let Err(reason) = crate::json::unescape(&b[start..i], &mut out) {
            self.pos = start;
            return Err(self.malformed(reason));
        }
        self.pos = i + 1;
        // Decoding valid UTF-8 with JSON escapes yields valid UTF-8.
        String::from_utf8(out).map(Cow::Owned).map_err(|_| self.malformed("invalid UTF-8 in a string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_number_text_and_order() {
        let v = parse(r#"{"b": [3.018e2, -0], "a": "x\u00e9"}"#).unwrap();
        let Json::Object(m) = v else { panic!() };
        assert_eq!(m[0].0, "b");
        assert_eq!(m[0].1, Json::Array(vec![Json::Number("3.018e2"), Json::Number("-0")]));
        assert_eq!(m[1].1, Json::String("xé".into()));
    }

    #[test]
    fn rejects_duplicate_keys_with_their_path() {
        let e = parse(r#"{"detail": {"a": [1], "a": [2]}}"#).unwrap_err();
        assert_eq!(e.to_string(), "duplicate key \"a\" at detail");
    }

    #[test]
    fn reports_line_and_column() {
        let e = parse("{\"a\":\n [x]}").unwrap_err();
        assert_eq!(e.to_string(), "not valid JSON at line 2 column 3: unexpected character 'x', expected a value");
    }

    #[test]
    fn bounds_depth_without_overflowing_the_stack() {
        let deep = "[".repeat(5000) + &"]".repeat(5000);
        assert!(matches!(parse(&deep), Err(SyntaxError::TooDeep { .. })));
    }

    #[test]
    fn rejects_bad_numbers_and_escapes() {
        for bad in ["01", "1.", "-", "1e", "\"\\x\"", "tru", "\"a", "[1,]", "{\"a\" 1}"] {
            assert!(parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
