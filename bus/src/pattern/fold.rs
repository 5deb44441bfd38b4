//! `equals-ignore-case`, as event-ruler does it: each character of the pattern stands for its
//! lower-case or its upper-case form (full Unicode, so `ß` stands for `ß` or `SS`), and the
//! event's text must spell one choice per character. The relation is one-sided: the pattern
//! `straße` matches `STRASSE` but not `strasse`. Upper-casing both sides is a quick necessary
//! test, used to pick candidates before the exact check.

/// Where the pattern must sit in the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    Whole,
    Prefix,
    Suffix,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Caseless {
    /// Per pattern character: its lower- and upper-case UTF-8 forms (possibly equal).
    forms: Vec<[Box<[u8]>; 2]>,
    ascii: bool,
}

fn lower(c: char) -> Box<[u8]> {
    c.to_lowercase().collect::<String>().into_bytes().into_boxed_slice()
}

fn upper_char(c: char) -> Box<[u8]> {
    c.to_uppercase().collect::<String>().into_bytes().into_boxed_slice()
}

impl Caseless {
    pub(crate) fn new(pattern: &str) -> Caseless {
        Caseless { forms: pattern.chars().map(|c| [lower(c), upper_char(c)]).collect(), ascii: pattern.is_ascii() }
    }

    /// Whether upper-casing a matching value always gives the upper-cased pattern, so the
    /// upper-cased hash finds every candidate (false for a few characters such as `İ`).
    pub(crate) fn filterable(&self) -> bool {
        self.forms.iter().all(|[lo, up]| *upper(std::str::from_utf8(lo).unwrap_or_default()) == **up)
    }

    /// Exact check of the value (or its start or end).
    pub(crate) fn matches(&self, v: &[u8], anchor: Anchor) -> bool {
        if self.ascii && v.is_ascii() {
            // Every form is one ASCII byte: a byte-wise case-insensitive compare is exact.
            let n = self.forms.len();
            let part = match anchor {
                Anchor::Whole if v.len() == n => v,
                Anchor::Prefix if v.len() >= n => &v[..n],
                Anchor::Suffix if v.len() >= n => &v[v.len() - n..],
                _ => return false,
            };
            return part.iter().zip(&self.forms).all(|(b, [lo, up])| *b == lo[0] || *b == up[0]);
        }
        // Positions the forms read so far can end at (few: forms differ in length rarely).
        let mut at: Vec<usize> = vec![if anchor == Anchor::Suffix { v.len() } else { 0 }];
        let mut next = Vec::new();
        let steps: Box<dyn Iterator<Item = &[Box<[u8]>; 2]>> =
            if anchor == Anchor::Suffix { Box::new(self.forms.iter().rev()) } else { Box::new(self.forms.iter()) };
        for forms in steps {
            next.clear();
            for &p in &at {
                for f in forms.iter() {
                    let to = if anchor == Anchor::Suffix {
                        v[..p].ends_with(f).then(|| p - f.len())
                    } else {
                        v[p..].starts_with(f).then(|| p + f.len())
                    };
                    if let Some(to) = to
                        && !next.contains(&to)
                    {
                        next.push(to);
                    }
                }
            }
            std::mem::swap(&mut at, &mut next);
            if at.is_empty() {
                return false;
            }
        }
        anchor != Anchor::Whole || at.contains(&v.len())
    }
}

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

    fn m(p: &str, v: &str, a: Anchor) -> bool {
        Caseless::new(p).matches(v.as_bytes(), a)
    }

    #[test]
    fn each_pattern_character_stands_for_its_lower_or_upper_form() {
        assert!(m("straße", "STRASSE", Anchor::Whole));
        assert!(m("straße", "STRAßE", Anchor::Whole));
        assert!(m("straße", "Straße", Anchor::Whole));
        assert!(!m("straße", "strasse", Anchor::Whole), "ß stands for ß or SS, not ss");
        assert!(!m("STRASSE", "straße", Anchor::Whole));
        assert!(!m("Σ", "ς", Anchor::Whole));
        assert!(m("ÉCOLE", "école", Anchor::Whole));
        assert!(!m("ÉCOLE", "ecole", Anchor::Whole));
        assert!(m("bEaCh", "BEACH", Anchor::Whole));
        assert!(!m("bEaCh", "BEACHES", Anchor::Whole));
        assert!(m(".PNG", "x.png", Anchor::Suffix));
        assert!(m("eventb", "EventBridge", Anchor::Prefix));
        assert!(!m("ß", "ssx", Anchor::Prefix));
        assert!(m("ß", "SSx", Anchor::Prefix));
    }

    #[test]
    fn upper_casing_filters_candidates() {
        assert_eq!(&*upper("straße"), "STRASSE".as_bytes());
        assert!(Caseless::new("straße").filterable());
        assert!(Caseless::new("abc").filterable());
    }
}
