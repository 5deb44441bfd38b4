//! `choreo pattern …`: check, test and benchmark EventBridge event patterns with the engine in
//! `choreo_bus::pattern`. Helpers shared by the three commands live here.

mod aws;
pub mod bench;
pub mod check;
pub mod test;

use std::fmt::{self, Write as _};
use std::io::Read;
use std::path::Path;

use anyhow::Context;

/// What kind of JSON value starts at the first non-blank byte of checked JSON text.
pub(crate) fn json_kind(text: &[u8]) -> &'static str {
    match text.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(_) => "a number",
        None => "nothing",
    }
}

/// `value` rendered on one line: control characters (a newline in a field name, say) are
/// escaped, so one answer never spans two output lines.
pub(crate) struct OneLine<T>(pub T);

impl<T: fmt::Display> fmt::Display for OneLine<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Escape<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl fmt::Write for Escape<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                for part in s.split_inclusive(char::is_control) {
                    match part.chars().last() {
                        Some(c) if c.is_control() => {
                            self.0.write_str(&part[..part.len() - c.len_utf8()])?;
                            for e in c.escape_default() {
                                self.0.write_char(e)?;
                            }
                        }
                        _ => self.0.write_str(part)?,
                    }
                }
                Ok(())
            }
        }
        write!(Escape(f), "{}", self.0)
    }
}

/// Reads a whole input file; `-` is stdin.
pub(crate) fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin().lock().read_to_end(&mut bytes).context("cannot read stdin")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(bytes)
}

/// How a file is named in messages.
pub(crate) fn shown(path: &Path) -> String {
    if path == Path::new("-") { "<stdin>".to_owned() } else { path.display().to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_escapes_control_characters_only() {
        assert_eq!(OneLine("at a\nb: wanted «x»\r\t").to_string(), "at a\\nb: wanted «x»\\r\\t");
        assert_eq!(OneLine("plain").to_string(), "plain");
    }

    #[test]
    fn json_kind_reads_the_first_byte() {
        assert_eq!(json_kind(b" [1]"), "an array");
        assert_eq!(json_kind(b"-1"), "a number");
        assert_eq!(json_kind(b"null"), "null");
    }
}
