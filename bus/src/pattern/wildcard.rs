//! Wildcard operands: `*` is any run of characters, `\*` a literal star, `\\` a backslash.
//! Only `*` is special, so greedy leftmost search of the literal pieces is exact and linear.

use memchr::memmem;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Wildcard {
    text: String,
    /// Literal pieces between stars; `pieces.len() == stars + 1`.
    pieces: Vec<Box<[u8]>>,
}

impl Wildcard {
    pub(crate) fn parse(text: &str) -> Result<Wildcard, String> {
        let mut pieces = Vec::new();
        let mut cur = Vec::new();
        let mut chars = text.char_indices().peekable();
        let mut prev_star = false;
        while let Some((i, c)) = chars.next() {
            match c {
                '*' => {
                    if prev_star {
                        return Err(format!("has consecutive '*' at position {i}"));
                    }
                    pieces.push(std::mem::take(&mut cur).into_boxed_slice());
                    prev_star = true;
                    continue;
                }
                '\\' => match chars.next() {
                    Some((_, '*')) => cur.push(b'*'),
                    Some((_, '\\')) => cur.push(b'\\'),
                    Some((j, other)) => return Err(format!("has an invalid escape '\\{other}' at position {j}")),
                    None => return Err(format!("ends with a lone '\\' at position {i}")),
                },
                _ => {
                    let mut b = [0u8; 4];
                    cur.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
            prev_star = false;
        }
        pieces.push(cur.into_boxed_slice());
        Ok(Wildcard { text: text.to_owned(), pieces })
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn stars(&self) -> usize {
        self.pieces.len() - 1
    }

    /// True when the whole value matches.
    pub(crate) fn matches(&self, v: &[u8]) -> bool {
        let first = &self.pieces[0];
        if self.pieces.len() == 1 {
            return v == &first[..];
        }
        let last = &self.pieces[self.pieces.len() - 1];
        if v.len() < first.len() + last.len() || !v.starts_with(first) || !v.ends_with(last) {
            return false;
        }
        let mut hay = &v[first.len()..v.len() - last.len()];
        for piece in &self.pieces[1..self.pieces.len() - 1] {
            if piece.is_empty() {
                continue;
            }
            match memmem::find(hay, piece) {
                Some(at) => hay = &hay[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, v: &str) -> bool {
        Wildcard::parse(p).unwrap().matches(v.as_bytes())
    }

    #[test]
    fn matching() {
        assert!(m("*", ""));
        assert!(m("a*b", "ab"));
        assert!(m("a*b", "axxb"));
        assert!(!m("a*b", "axxbc"));
        assert!(m("*9*9", "0919"));
        assert!(!m("aa*aa", "aaa"));
        assert!(m("2*0*1*7", "2031007"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("a\\\\b", "a\\b"));
        assert!(m("*ab*ab*", "xabyab"));
        assert!(!m("*ab*ab*", "xaby"));
    }

    #[test]
    fn rejects_bad_operands() {
        assert!(Wildcard::parse("a**b").unwrap_err().contains("position 2"));
        assert!(Wildcard::parse("a\\b").is_err());
        assert!(Wildcard::parse("ab\\").is_err());
        assert!(Wildcard::parse("a\\**b").is_ok());
    }
}
