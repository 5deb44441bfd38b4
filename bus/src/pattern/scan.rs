//! One pass over an event's JSON text, guided by the machine's field trie: values at named
//! paths are tested where they lie, everything else is skipped unparsed. Tests that pass fire
//! targets into the scratch space; nothing is allocated once the scratch space is warm.

use super::compile::{Affixes, But, Caseless, Kind, Leaf, Machine, NONE, Targets};
use super::fold;
use super::fold::Anchor;
use super::number;
use super::skip;
use super::{EventError, Scratch};
use crate::json::unescape;

/// Events nest at most this deep on the paths a pattern follows (EventBridge: ~1,000-1,100).
pub const MAX_EVENT_DEPTH: usize = 1100;

pub(crate) struct Scan<'a> {
    pub m: &'a Machine,
    pub s: &'a mut Scratch,
    pub b: &'a [u8],
    pub pos: usize,
    /// Context (array element) the current value lies in; 0 is outside every array.
    pub ctx: u32,
    pub depth: usize,
}

/// A scalar value as it appears in the event.
#[derive(Clone, Copy)]
enum Scalar<'b> {
    String { raw: &'b [u8], escaped: bool },
    Number(&'b [u8]),
    True,
    False,
    Null,
}

impl<'a> Scan<'a> {
    fn err(&self, reason: &'static str) -> EventError {
        EventError { offset: self.pos, reason }
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    pub fn root(&mut self) -> Result<(), EventError> {
        self.ws();
        if self.b.get(self.pos) != Some(&b'{') {
            return Err(self.err("an event must be a JSON object"));
        }
        self.object(0)?;
        self.ws();
        if self.pos != self.b.len() {
            return Err(self.err("unexpected text after the event"));
        }
        Ok(())
    }

    /// At `{`; the trie node has the field names to look for.
    fn object(&mut self, node: u32) -> Result<(), EventError> {
        self.depth += 1;
        if self.depth > MAX_EVENT_DEPTH {
            return Err(self.err("event nests too deeply"));
        }
        self.pos += 1;
        self.ws();
        if self.b.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            if self.b.get(self.pos) != Some(&b'"') {
                return Err(self.err("expected a string key"));
            }
            let start = self.pos + 1;
            let (end, escaped) = skip::string(self.b, start).map_err(|r| self.err(r))?;
            self.pos = end;
            let key = &self.b[start..end - 1];
            let child = if escaped {
                let mut buf = std::mem::take(&mut self.s.key_buf);
                let c = unescape(key, &mut buf).map(|()| self.m.nodes[node as usize].child(&buf));
                self.s.key_buf = buf;
                c.map_err(|r| self.err(r))?
            } else {
                self.m.nodes[node as usize].child(key)
            };
            self.ws();
            if self.b.get(self.pos) != Some(&b':') {
                return Err(self.err("expected ':' after a key"));
            }
            self.pos += 1;
            self.ws();
            match child {
                Some(c) => self.value(c)?,
                None => self.skip_value()?,
            }
            self.ws();
            match self.b.get(self.pos) {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected ',' or '}' in an object")),
            }
        }
    }

    /// A value at a trie node: descend into objects it names, test scalars it has a leaf for.
    fn value(&mut self, node: u32) -> Result<(), EventError> {
        let n = &self.m.nodes[node as usize];
        let leaf = n.leaf;
        match self.b.get(self.pos) {
            Some(b'{') => {
                if n.has_children() {
                    self.object(node)
                } else {
                    self.skip_value()
                }
            }
            Some(b'[') => self.array(node),
            Some(_) if leaf == NONE => self.skip_value(),
            Some(_) => {
                let v = self.scalar()?;
                self.test(leaf, v);
                Ok(())
            }
            None => Err(self.err("unexpected end of the event, expected a value")),
        }
    }

    fn array(&mut self, node: u32) -> Result<(), EventError> {
        self.depth += 1;
        if self.depth > MAX_EVENT_DEPTH {
            return Err(self.err("event nests too deeply"));
        }
        let track = self.m.track_arrays;
        let array_id = if track {
            self.s.arrays += 1;
            self.s.arrays
        } else {
            0
        };
        let outer = self.ctx;
        self.pos += 1;
        self.ws();
        if self.b.get(self.pos) == Some(&b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            // Scalars take the context of the array's parent: only containers can hold fields
            // that must agree on one element (see eval.rs).
            if track && matches!(self.b.get(self.pos), Some(b'{' | b'[')) {
                self.ctx = self.s.new_ctx(outer, array_id);
            }
            self.value(node)?;
            self.ctx = outer;
            self.ws();
            match self.b.get(self.pos) {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected ',' or ']' in an array")),
            }
        }
    }

    fn skip_value(&mut self) -> Result<(), EventError> {
        match self.b.get(self.pos) {
            Some(b'"') => {
                self.pos = skip::string(self.b, self.pos + 1).map_err(|r| self.err(r))?.0;
            }
            Some(b'{' | b'[') => {
                self.pos = skip::container(self.b, self.pos + 1).map_err(|r| self.err(r))?;
            }
            Some(_) => {
                self.scalar()?;
            }
            None => return Err(self.err("unexpected end of the event, expected a value")),
        }
        Ok(())
    }

    fn scalar(&mut self) -> Result<Scalar<'a>, EventError> {
        let b = self.b;
        let start = self.pos;
        match b.get(start) {
            Some(b'"') => {
                let (end, escaped) = skip::string(b, start + 1).map_err(|r| self.err(r))?;
                self.pos = end;
                Ok(Scalar::String { raw: &b[start + 1..end - 1], escaped })
            }
            Some(b't') if b[start..].starts_with(b"true") => {
                self.pos += 4;
                Ok(Scalar::True)
            }
            Some(b'f') if b[start..].starts_with(b"false") => {
                self.pos += 5;
                Ok(Scalar::False)
            }
            Some(b'n') if b[start..].starts_with(b"null") => {
                self.pos += 4;
                Ok(Scalar::Null)
            }
            Some(b'-' | b'0'..=b'9') => {
                let mut i = start + 1;
                while let Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') = b.get(i) {
                    i += 1;
                }
                self.pos = i;
                Ok(Scalar::Number(&b[start..i]))
            }
            _ => Err(self.err("expected a value")),
        }
    }

    /// Runs a leaf's tests on one scalar.
    fn test(&mut self, leaf: u32, v: Scalar<'_>) {
        let m = self.m;
        let l = &m.leaves[leaf as usize];
        self.fire(l.any);
        match v {
            Scalar::String { raw, escaped } => {
                if l.has_string_tests || !l.buts.is_empty() {
                    if escaped {
                        let mut buf = std::mem::take(&mut self.s.value_buf);
                        if unescape(raw, &mut buf).is_ok() {
                            self.test_string(l, &buf);
                        }
                        self.s.value_buf = buf;
                    } else {
                        self.test_string(l, raw);
                    }
                }
            }
            Scalar::Number(raw) => {
                let parsed = if l.needs_number || l.buts.iter().any(|(b, _)| matches!(b, But::Numbers(_))) {
                    number::parse_event(raw)
                } else {
                    None
                };
                if let Some(v) = parsed {
                    if let Some(&t) = l.numbers.get(&number::key(v)) {
                        self.fire(t);
                    }
                    for &(ref r, t) in &l.ranges {
                        if r.contains(v) {
                            self.fire(t);
                        }
                    }
                }
                for &(ref but, t) in &l.buts {
                    let excluded = match (but, parsed) {
                        (But::Numbers(keys), Some(v)) => keys.contains(&number::key(v)),
                        _ => false,
                    };
                    if !excluded {
                        self.fire(t);
                    }
                }
            }
            Scalar::True | Scalar::False | Scalar::Null => {
                let i = match v {
                    Scalar::True => 0,
                    Scalar::False => 1,
                    _ => 2,
                };
                self.fire(l.literals[i]);
                for &(_, t) in &l.buts {
                    self.fire(t);
                }
            }
        }
    }

    fn test_string(&mut self, l: &Leaf, v: &[u8]) {
        if let Some(&t) = l.exact.get(v) {
            self.fire(t);
        }
        self.affixes(&l.prefix, v, false);
        self.affixes(&l.suffix, v, true);
        if l.needs_upper {
            let mut up = std::mem::take(&mut self.s.upper_buf);
            fold::upper_into(v, &mut up);
            // The upper-cased value finds candidates; each is then checked exactly.
            if let Some(cands) = l.ic_exact.get(&up) {
                self.caseless(cands, v, Anchor::Whole);
            }
            for (n, map) in &l.ic_prefix.0 {
                if *n > up.len() {
                    break;
                }
                if let Some(cands) = map.get(&up[..*n]) {
                    self.caseless(cands, v, Anchor::Prefix);
                }
            }
            for (n, map) in &l.ic_suffix.0 {
                if *n > up.len() {
                    break;
                }
                if let Some(cands) = map.get(&up[up.len() - n..]) {
                    self.caseless(cands, v, Anchor::Suffix);
                }
            }
            for &(ref c, anchor, t) in &l.ic_other {
                if c.matches(v, anchor) {
                    self.fire(t);
                }
            }
            for &(ref but, t) in &l.buts {
                if let But::IgnoreCase(list) = but
                    && !list.iter().any(|c| c.matches(v, Anchor::Whole))
                {
                    self.fire(t);
                }
            }
            self.s.upper_buf = up;
        }
        for &(ref w, t) in &l.wildcards {
            if w.matches(v) {
                self.fire(t);
            }
        }
        for &(ref c, t) in &l.cidrs {
            if c.contains(v) {
                self.fire(t);
            }
        }
        for &(ref but, t) in &l.buts {
            let excluded = match but {
                But::Strings(set) => set.get(v).is_some(),
                But::Numbers(_) => false,
                But::Prefix(list) => list.iter().any(|p| v.starts_with(p)),
                But::Suffix(list) => list.iter().any(|p| v.ends_with(p)),
                But::Wildcard(list) => list.iter().any(|w| w.matches(v)),
                But::IgnoreCase(_) => continue, // tested above, on the upper-cased value
            };
            if !excluded {
                self.fire(t);
            }
        }
    }

    fn caseless(&mut self, cands: &Caseless, v: &[u8], anchor: Anchor) {
        for &(ref c, t) in cands {
            if c.matches(v, anchor) {
                self.fire(t);
            }
        }
    }

    /// Fires the prefixes (or suffixes, `from_end`) the value has: one lookup per length.
    #[inline]
    fn affixes(&mut self, a: &Affixes, v: &[u8], from_end: bool) {
        for (n, map) in &a.0 {
            if *n > v.len() {
                break;
            }
            let part = if from_end { &v[v.len() - n..] } else { &v[..*n] };
            if let Some(&t) = map.get(part) {
                self.fire(t);
            }
        }
    }

    #[inline]
    fn fire(&mut self, t: Targets) {
        if t.len == 0 {
            return;
        }
        let start = t.start as usize;
        let targets = &self.m.targets[start..start + t.len as usize];
        for (k, t) in targets.iter().enumerate() {
            if t.kind == Kind::Simple {
                self.s.matched_rule(t.rule);
            } else {
                self.s.hit((start + k) as u32, t.branch, t.field, t.kind == Kind::Presence, self.ctx);
            }
        }
    }
}
