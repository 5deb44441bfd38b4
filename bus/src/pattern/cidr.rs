//! IP address ranges (`{"cidr": "10.0.0.0/24"}`), IPv4 and IPv6.

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cidr {
    text: String,
    v6: bool,
    net: u128,
    mask: u128,
}

impl Cidr {
    pub(crate) fn parse(text: &str) -> Result<Cidr, String> {
        let mut parts = text.split('/');
        let (Some(addr), Some(bits), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("\"{text}\" must be an address, one '/', and a prefix length"));
        };
        let ip: IpAddr = addr.parse().map_err(|_| format!("\"{addr}\" is not a valid IP address"))?;
        let bits: u32 = bits.parse().map_err(|_| format!("prefix length \"{bits}\" is not a number"))?;
        let (v6, width, value) = match ip {
            IpAddr::V4(a) => (false, 32, u128::from(u32::from(a))),
            IpAddr::V6(a) => (true, 128, u128::from(a)),
        };
        if bits > width {
            return Err(format!("prefix length {bits} exceeds {width} for {}", if v6 { "IPv6" } else { "IPv4" }));
        }
        let mask = if bits == 0 { 0 } else { (u128::MAX << (128 - bits)) >> (128 - width) };
        Ok(Cidr { text: text.to_owned(), v6, net: value & mask, mask })
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// True when the string is an IP address of the same family inside the range.
    pub(crate) fn contains(&self, v: &[u8]) -> bool {
        let Ok(s) = std::str::from_utf8(v) else { return false };
        match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if !self.v6 => u128::from(u32::from(a)) & self.mask == self.net,
            Ok(IpAddr::V6(a)) if self.v6 => u128::from(a) & self.mask == self.net,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let c = Cidr::parse("10.0.0.0/22").unwrap();
        assert!(c.contains(b"10.0.3.255"));
        assert!(!c.contains(b"10.0.4.0"));
        assert!(!c.contains(b"10.0.0.0/22"));
        let c6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c6.contains(b"2001:DB8:0:0:0:0:0:1"));
        assert!(!c6.contains(b"10.0.0.1"));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(b"1.2.3.4"));
        for bad in ["10.0.0.0/33", "10.0.0.0", "300.0.0.0/8", "::1/129", "10.0.0.0/8/8", "foo"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
