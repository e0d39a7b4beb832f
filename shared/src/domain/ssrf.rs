//! SSRF guard for callback-supplied video URLs. The callback body is not signed by the
//! upstream's scheme, so a `video_url` may point anywhere; this module decides where a
//! fetch may go. Pure: [`UrlPolicy::check_url`] for the URL (and every redirect hop),
//! [`UrlPolicy::check_ip`] for every address a host name resolves to. The fetch client
//! (`fetch` module) connects only to addresses this guard accepted.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// A host allowlist entry: `cdn.example.com` (exactly) or `*.example.com` (any subdomain,
/// not the apex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    Suffix(String),
}

impl HostPattern {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        match raw.strip_prefix("*.") {
            Some(suffix) if valid(suffix) => Ok(Self::Suffix(format!(".{suffix}"))),
            None if valid(&raw) => Ok(Self::Exact(raw)),
            _ => Err(format!("{raw:?} is not a host name or a *.suffix pattern")),
        }
    }

    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self {
            Self::Exact(h) => host == *h,
            Self::Suffix(s) => host.ends_with(s.as_str()) && host.len() > s.len(),
        }
    }
}

/// Which video URLs are acceptable and where fetches may go: one policy, read once
/// (`lambda::config`), that the receiver applies to a callback's URL (scheme, credentials)
/// and ingest to every fetch and redirect hop (also the addresses and the allowlist).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Allow `http://`. Local stacks only.
    pub allow_http: bool,
    /// Allow loopback addresses (127.0.0.0/8, ::1). Local stacks only; never in the template.
    pub allow_loopback: bool,
    /// When non-empty, only these hosts may be fetched (on every hop).
    pub allowed_hosts: Vec<HostPattern>,
}

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Unspecified,
    Loopback,
    Private,
    SharedCgnat,
    LinkLocal,
    UniqueLocal,
    Multicast,
    Broadcast,
    Documentation,
    Reserved,
}

impl AddressClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::SharedCgnat => "shared_cgnat",
            Self::LinkLocal => "link_local",
            Self::UniqueLocal => "unique_local",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Reserved => "reserved",
        }
    }
}

/// Why the guard refused a URL or an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Blocked {
    #[error("scheme {0:?} is not allowed")]
    Scheme(String),
    #[error("URLs with a user name or password are not allowed")]
    Userinfo,
    #[error("URL has no host")]
    NoHost,
    #[error("host {0:?} is not in the allowlist")]
    HostNotAllowed(String),
    #[error("address {addr} is {} and may not be fetched", class.as_str())]
    Address { addr: IpAddr, class: AddressClass },
    #[error("host {0:?} resolved to no address")]
    Unresolvable(String),
}

impl UrlPolicy {
    /// Checks a URL before connecting and on every redirect hop: scheme, credentials,
    /// allowlist, and the address itself when the host is an IP literal (in any of the
    /// forms the URL parser normalises: decimal, octal, hex, IPv4-mapped IPv6).
    pub fn check_url(&self, url: &Url) -> Result<(), Blocked> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            other => return Err(Blocked::Scheme(other.to_owned())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Blocked::Userinfo);
        }
        let host = url.host().ok_or(Blocked::NoHost)?;
        let host_str = match &host {
            Host::Domain(d) => (*d).to_owned(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        };
        if !self.allowed_hosts.is_empty()
            && !self.allowed_hosts.iter().any(|p| p.matches(&host_str))
        {
            return Err(Blocked::HostNotAllowed(host_str));
        }
        match host {
            Host::Ipv4(ip) => self.check_ip(IpAddr::V4(ip)),
            Host::Ipv6(ip) => self.check_ip(IpAddr::V6(ip)),
            Host::Domain(_) => Ok(()),
        }
    }

    /// Checks one resolved (or literal) address.
    pub fn check_ip(&self, addr: IpAddr) -> Result<(), Blocked> {
        match classify(addr) {
            None => Ok(()),
            Some(AddressClass::Loopback) if self.allow_loopback => Ok(()),
            Some(class) => Err(Blocked::Address { addr, class }),
        }
    }
}

/// `None` for a public unicast address; otherwise why it is not one.
pub fn classify(addr: IpAddr) -> Option<AddressClass> {
    match addr {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_broadcast() => AddressClass::Broadcast,
        (0, _, _) => AddressClass::Unspecified,
        (127, _, _) => AddressClass::Loopback,
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => AddressClass::Private,
        (100, 64..=127, _) => AddressClass::SharedCgnat,
        (169, 254, _) => AddressClass::LinkLocal,
        (192, 0, 0) | (198, 18..=19, _) => AddressClass::Reserved,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddressClass::Documentation,
        (224..=239, _, _) => AddressClass::Multicast,
        (240..=255, _, _) => AddressClass::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    let seg = ip.segments();
    // Forms that embed an IPv4 address are judged by that address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match seg {
        // NAT64 well-known prefix 64:ff9b::/96.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return classify_v4(embedded(hi, lo)),
        // Deprecated IPv4-compatible ::a.b.c.d (but not :: and ::1).
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 => return classify_v4(embedded(hi, lo)),
        // 6to4 2002:AABB:CCDD::/48.
        [0x2002, hi, lo, ..] => return classify_v4(embedded(hi, lo)),
        _ => {}
    }
    Some(match seg[0] {
        _ if ip.is_unspecified() => AddressClass::Unspecified,
        _ if ip.is_loopback() => AddressClass::Loopback,
        s if s & 0xfe00 == 0xfc00 => AddressClass::UniqueLocal,
        s if s & 0xffc0 == 0xfe80 => AddressClass::LinkLocal,
        // Deprecated site-local fec0::/10 routes internally too.
        s if s & 0xffc0 == 0xfec0 => AddressClass::Private,
        s if s & 0xff00 == 0xff00 => AddressClass::Multicast,
        0x2001 if seg[1] == 0x0db8 => AddressClass::Documentation,
        // Only 2000::/3 is global unicast.
        s if s & 0xe000 != 0x2000 => AddressClass::Reserved,
        _ => return None,
    })
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(h) => f.write_str(h),
            Self::Suffix(s) => write!(f, "*{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> UrlPolicy {
        UrlPolicy::default()
    }

    fn check(policy: &UrlPolicy, raw: &str) -> Result<(), Blocked> {
        match Url::parse(raw) {
            Ok(url) => policy.check_url(&url),
            // The URL parser refusing it is a block too; report as NoHost for the table.
            Err(_) => Err(Blocked::NoHost),
        }
    }

    #[test]
    fn hostile_urls_are_blocked() {
        let p = strict();
        let table: &[(&str, &str)] = &[
            // Loopback in every spelling the URL parser normalises.
            ("https://127.0.0.1/v.mp4", "loopback"),
            ("https://127.1/v.mp4", "loopback"),
            ("https://2130706433/v.mp4", "loopback"),
            ("https://0x7f000001/v.mp4", "loopback"),
            ("https://0x7f.0.0.1/v.mp4", "loopback"),
            ("https://0177.0.0.1/v.mp4", "loopback"),
            ("https://017700000001/v.mp4", "loopback"),
            ("https://[::1]/v.mp4", "loopback"),
            ("https://[::ffff:127.0.0.1]/v.mp4", "loopback"),
            ("https://[::ffff:7f00:1]/v.mp4", "loopback"),
            ("https://[0:0:0:0:0:ffff:127.0.0.1]/v.mp4", "loopback"),
            ("https://[64:ff9b::127.0.0.1]/v.mp4", "loopback"),
            ("https://[2002:7f00:1::]/v.mp4", "loopback"),
            ("https://[::127.0.0.1]/v.mp4", "loopback"),
            // Private, shared, link-local (metadata service), unspecified.
            ("https://10.0.0.1/", "private"),
            ("https://172.16.0.1/", "private"),
            ("https://172.31.255.255/", "private"),
            ("https://192.168.1.1/", "private"),
            ("https://[::ffff:10.1.2.3]/", "private"),
            ("https://100.64.0.1/", "shared_cgnat"),
            ("https://100.127.255.255/", "shared_cgnat"),
            ("https://169.254.169.254/latest/meta-data/", "link_local"),
            ("https://2852039166/latest/meta-data/", "link_local"),
            ("https://[::ffff:169.254.169.254]/", "link_local"),
            ("https://[fe80::1]/", "link_local"),
            ("https://[fd00:ec2::254]/", "unique_local"),
            ("https://[fc00::1]/", "unique_local"),
            ("https://0.0.0.0/", "unspecified"),
            ("https://0/", "unspecified"),
            ("https://[::]/", "unspecified"),
            ("https://224.0.0.1/", "multicast"),
            ("https://[ff02::1]/", "multicast"),
            ("https://255.255.255.255/", "broadcast"),
            ("https://240.0.0.1/", "reserved"),
            ("https://192.0.2.1/", "documentation"),
        ];
        for (url, class) in table {
            match check(&p, url) {
                Err(Blocked::Address { class: c, .. }) => assert_eq!(c.as_str(), *class, "{url}"),
                other => panic!("{url}: expected {class}, got {other:?}"),
            }
        }
    }

    #[test]
    fn scheme_and_credentials() {
        let p = strict();
        assert_eq!(
            check(&p, "http://cdn.example/v.mp4"),
            Err(Blocked::Scheme("http".into()))
        );
        assert_eq!(
            check(&p, "file:///etc/passwd"),
            Err(Blocked::Scheme("file".into()))
        );
        assert_eq!(
            check(&p, "gopher://cdn.example/"),
            Err(Blocked::Scheme("gopher".into()))
        );
        assert_eq!(
            check(&p, "ftp://cdn.example/"),
            Err(Blocked::Scheme("ftp".into()))
        );
        assert_eq!(
            check(&p, "https://a:b@cdn.example/"),
            Err(Blocked::Userinfo)
        );
        assert_eq!(check(&p, "https://cdn.example/v.mp4"), Ok(()));
        assert_eq!(check(&p, "https://93.184.215.14/v.mp4"), Ok(()));
        assert_eq!(
            check(&p, "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/"),
            Ok(())
        );
    }

    #[test]
    fn local_policy_allows_only_loopback_and_http() {
        let p = UrlPolicy {
            allow_http: true,
            allow_loopback: true,
            allowed_hosts: vec![],
        };
        assert_eq!(check(&p, "http://127.0.0.1:8090/v.mp4"), Ok(()));
        assert_eq!(check(&p, "http://[::1]:8090/v.mp4"), Ok(()));
        assert!(check(&p, "http://169.254.169.254/").is_err());
        assert!(check(&p, "http://10.0.0.1/").is_err());
        assert!(check(&p, "http://[::ffff:192.168.0.1]/").is_err());
    }

    #[test]
    fn allowlist_with_wildcards_applies_to_every_hop() {
        let p = UrlPolicy {
            allowed_hosts: vec![
                HostPattern::parse("cdn.example.com").unwrap(),
                HostPattern::parse("*.videos.example.org").unwrap(),
            ],
            ..UrlPolicy::default()
        };
        assert_eq!(check(&p, "https://cdn.example.com/v.mp4"), Ok(()));
        assert_eq!(check(&p, "https://CDN.Example.com./v.mp4"), Ok(()));
        assert_eq!(check(&p, "https://eu.videos.example.org/v.mp4"), Ok(()));
        assert_eq!(check(&p, "https://a.b.videos.example.org/v.mp4"), Ok(()));
        for bad in [
            "https://videos.example.org/v.mp4",
            "https://evilvideos.example.org/v.mp4",
            "https://cdn.example.com.evil.net/v.mp4",
            "https://x.cdn.example.com/v.mp4",
            "https://93.184.215.14/v.mp4",
        ] {
            assert!(
                matches!(check(&p, bad), Err(Blocked::HostNotAllowed(_))),
                "{bad}"
            );
        }
        assert!(HostPattern::parse("*.").is_err());
        assert!(HostPattern::parse("a/b").is_err());
        assert_eq!(
            HostPattern::parse("*.Example.com").unwrap().to_string(),
            "*.example.com"
        );
    }

    #[test]
    fn resolved_addresses_are_checked_too() {
        let p = strict();
        for bad in [
            "127.0.0.1",
            "10.1.1.1",
            "::1",
            "::ffff:169.254.169.254",
            "fd12::1",
        ] {
            assert!(p.check_ip(bad.parse().unwrap()).is_err(), "{bad}");
        }
        for good in ["93.184.215.14", "8.8.8.8", "2606:4700::1111"] {
            assert!(p.check_ip(good.parse().unwrap()).is_ok(), "{good}");
        }
    }
}
