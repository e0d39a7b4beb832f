//! SSRF guard for callback-supplied video URLs. The callback body is not signed by the
//! upstream's scheme, so a `video_url` may point anywhere; this module decides where a
//! fetch may go. Pure: [`UrlPolicy::check_url`] for the URL (and every redirect hop),
//! [`UrlPolicy::check_ip`] for every address a host name resolves to. The fetch client
//! (`fetch` module) connects only to addresses this guard accepted. [`classify`] looks an
//! address up in one table of ranges per family, taken from the IANA IPv4 and IPv6
//! Special-Purpose Address Registries: whatever they mark not globally reachable is
//! refused, as are multicast, broadcast and IPv6 outside 2000::/3.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

// Short names for the range tables.
use AddressClass as C;
use V6Rule::{Block, Embeds};

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
    Benchmarking,
    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) of a public IPv4 address: the IPv4
    /// address is what to fetch, not this form.
    Ipv4Mapped,
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
            Self::Benchmarking => "benchmarking",
            Self::Ipv4Mapped => "ipv4_mapped",
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
    /// `localhost` and every name under `.localhost` are loopback by definition
    /// (RFC 6761 §6.3), whatever a resolver says: refused without asking one.
    #[error("host {0:?} is a loopback name and may not be fetched")]
    LoopbackName(String),
}

impl UrlPolicy {
    /// Checks a URL before connecting and on every redirect hop: scheme, credentials,
    /// allowlist, and the address itself when the host is an IP literal (in any of the
    /// forms the URL parser normalises: decimal, octal, hex, IPv4-mapped IPv6).
    pub fn check_url(&self, url: &Url) -> Result<(), Blocked> {
        self.check_shape(url)?;
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
            Host::Domain(name) if is_loopback_name(name) && !self.allow_loopback => {
                Err(Blocked::LoopbackName(host_str))
            }
            Host::Domain(_) => Ok(()),
        }
    }

    /// What a URL must look like before anything else is asked of it (the receiver checks
    /// this much when a callback arrives): an allowed scheme, a host, no credentials.
    pub fn check_shape(&self, url: &Url) -> Result<(), Blocked> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            other => return Err(Blocked::Scheme(other.to_owned())),
        }
        if url.host().is_none() {
            return Err(Blocked::NoHost);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Blocked::Userinfo);
        }
        Ok(())
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

/// `localhost`, `x.localhost`, with or without the root's trailing dot, in any case
/// (the URL parser has already lowered and IDNA-mapped the name).
fn is_loopback_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// `None` for a public unicast address; otherwise why it is not one.
fn classify(addr: IpAddr) -> Option<AddressClass> {
    match addr {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    longest_match(V4_RANGES, ip).map(|r| r.rule)
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    match longest_match(V6_RANGES, ip)?.rule {
        V6Rule::Block(class) => Some(class),
        // The embedded address decides first, so `::ffff:10.0.0.1` reports `private`.
        V6Rule::Embeds { at, public } => classify_v4(embedded_v4(ip, at)).or(public),
    }
}

/// The 32 bits of `ip` that start `at` bits from the top, as an IPv4 address.
fn embedded_v4(ip: Ipv6Addr, at: u8) -> Ipv4Addr {
    // Truncation is the point: keep only the 32 bits of the embedded address.
    Ipv4Addr::from_bits((ip.to_bits() >> (96 - u32::from(at))) as u32)
}

/// One special-purpose range: `net/len`, what to do with an address in it, and a short
/// name with its RFC (for people and test messages).
#[derive(Debug, Clone, Copy)]
struct Range<A, R> {
    net: A,
    len: u8,
    rule: R,
    // Read only by test messages; in the table it documents each entry.
    #[cfg_attr(not(test), allow(dead_code))]
    name: &'static str,
}

/// An address as an integer of `WIDTH` bits, for prefix matching.
trait Bits: Copy {
    const WIDTH: u32;
    fn bits(self) -> u128;
}

impl Bits for Ipv4Addr {
    const WIDTH: u32 = 32;
    fn bits(self) -> u128 {
        u128::from(self.to_bits())
    }
}

impl Bits for Ipv6Addr {
    const WIDTH: u32 = 128;
    fn bits(self) -> u128 {
        self.to_bits()
    }
}

impl<A: Bits, R> Range<A, R> {
    fn contains(&self, ip: A) -> bool {
        let host_bits = A::WIDTH - u32::from(self.len);
        // `checked_shr` is `None` only for an IPv6 /0 (shift by 128), which matches all.
        (ip.bits() ^ self.net.bits())
            .checked_shr(host_bits)
            .unwrap_or(0)
            == 0
    }
}

/// The most specific entry containing `ip`, so a narrow entry inside a wider one (e.g.
/// 255.255.255.255/32 inside 240.0.0.0/4) wins regardless of table order.
fn longest_match<A: Bits, R>(table: &'static [Range<A, R>], ip: A) -> Option<&'static Range<A, R>> {
    table
        .iter()
        .filter(|r| r.contains(ip))
        .max_by_key(|r| r.len)
}

/// What an IPv6 range means for an address in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V6Rule {
    Block(AddressClass),
    /// The range embeds an IPv4 address `at` bits from the top; that address is judged
    /// first, and when it is public the result is `public` (`None`: allowed).
    Embeds {
        at: u8,
        public: Option<AddressClass>,
    },
}

const fn v4(net: [u8; 4], len: u8, class: AddressClass, name: &'static str) -> V4Range {
    let [a, b, c, d] = net;
    Range {
        net: Ipv4Addr::new(a, b, c, d),
        len,
        rule: class,
        name,
    }
}

/// `head` is the network's leading segments, the rest zero: `&[0x2001, 0xdb8]` is
/// 2001:db8::, as written in the registry.
const fn v6(head: &[u16], len: u8, rule: V6Rule, name: &'static str) -> V6Range {
    let mut seg = [0u16; 8];
    let mut i = 0;
    while i < head.len() {
        seg[i] = head[i];
        i += 1;
    }
    let [a, b, c, d, e, f, g, h] = seg;
    Range {
        net: Ipv6Addr::new(a, b, c, d, e, f, g, h),
        len,
        rule,
        name,
    }
}

type V4Range = Range<Ipv4Addr, AddressClass>;
type V6Range = Range<Ipv6Addr, V6Rule>;

/// Every IPv4 range the IANA IPv4 Special-Purpose Address Registry marks not globally
/// reachable, plus multicast and broadcast; anything else is public. The registry's
/// globally reachable entries (192.31.196.0/24, 192.52.193.0/24, 192.175.48.0/24) stay
/// allowed.
#[rustfmt::skip]
const V4_RANGES: &[V4Range] = &[
    v4([0, 0, 0, 0],         8,  C::Unspecified,   "\"this network\" (RFC 791)"),
    v4([10, 0, 0, 0],        8,  C::Private,       "private-use (RFC 1918)"),
    v4([100, 64, 0, 0],      10, C::SharedCgnat,   "shared address space (RFC 6598)"),
    v4([127, 0, 0, 0],       8,  C::Loopback,      "loopback (RFC 1122)"),
    v4([169, 254, 0, 0],     16, C::LinkLocal,     "link-local (RFC 3927)"),
    v4([172, 16, 0, 0],      12, C::Private,       "private-use (RFC 1918)"),
    // The whole /24: its few globally reachable anycast /32s are not video hosts.
    v4([192, 0, 0, 0],       24, C::Reserved,      "IETF protocol assignments (RFC 6890)"),
    v4([192, 0, 2, 0],       24, C::Documentation, "TEST-NET-1 (RFC 5737)"),
    v4([192, 88, 99, 0],     24, C::Reserved,      "6to4 relay anycast, deprecated (RFC 7526)"),
    v4([192, 168, 0, 0],     16, C::Private,       "private-use (RFC 1918)"),
    v4([198, 18, 0, 0],      15, C::Benchmarking,  "benchmarking (RFC 2544)"),
    v4([198, 51, 100, 0],    24, C::Documentation, "TEST-NET-2 (RFC 5737)"),
    v4([203, 0, 113, 0],     24, C::Documentation, "TEST-NET-3 (RFC 5737)"),
    v4([224, 0, 0, 0],       4,  C::Multicast,     "multicast (RFC 5771)"),
    v4([240, 0, 0, 0],       4,  C::Reserved,      "reserved (RFC 1112)"),
    v4([255, 255, 255, 255], 32, C::Broadcast,     "limited broadcast (RFC 919)"),
];

/// Every IPv6 range the IANA IPv6 Special-Purpose Address Registry marks not globally
/// reachable (or N/A), multicast, and everything outside 2000::/3, the only global
/// unicast space. Forms that embed an IPv4 address are judged by that address.
#[rustfmt::skip]
const V6_RANGES: &[V6Range] = &[
    v6(&[],                       128, Block(C::Unspecified),   "unspecified (RFC 4291)"),
    v6(&[0, 0, 0, 0, 0, 0, 0, 1], 128, Block(C::Loopback),      "loopback (RFC 4291)"),
    // ::/96 is not routable, so even a public embedded address is refused.
    v6(&[],                       96,  Embeds { at: 96, public: Some(C::Reserved) },
       "IPv4-compatible, deprecated (RFC 4291)"),
    v6(&[0, 0, 0, 0, 0, 0xffff],  96,  Embeds { at: 96, public: Some(C::Ipv4Mapped) },
       "IPv4-mapped (RFC 4291)"),
    // Globally reachable: a NAT64 gateway fetches the embedded address.
    v6(&[0x64, 0xff9b],           96,  Embeds { at: 96, public: None },
       "NAT64 well-known prefix (RFC 6052)"),
    v6(&[0x64, 0xff9b, 1],        48,  Block(C::Private),       "NAT64 local-use (RFC 8215)"),
    v6(&[0x100],                  64,  Block(C::Reserved),      "discard-only (RFC 6666)"),
    v6(&[0x100, 0, 0, 1],         64,  Block(C::Reserved),      "dummy prefix (RFC 9780)"),
    // The whole /23 (Teredo, ORCHIDv2, AMT, anycast, ...): none of it hosts videos.
    v6(&[0x2001],                 23,  Block(C::Reserved),      "IETF protocol use (RFC 2928)"),
    v6(&[0x2001, 0x2],            48,  Block(C::Benchmarking),  "benchmarking (RFC 5180)"),
    v6(&[0x2001, 0xdb8],          32,  Block(C::Documentation), "documentation (RFC 3849)"),
    v6(&[0x2002],                 16,  Embeds { at: 16, public: None },
       "6to4 (RFC 3056)"),
    v6(&[0x3fff],                 20,  Block(C::Documentation), "documentation (RFC 9637)"),
    v6(&[0x5f00],                 16,  Block(C::Reserved),      "SRv6 SIDs (RFC 9602)"),
    v6(&[0xfc00],                 7,   Block(C::UniqueLocal),   "unique local (RFC 4193)"),
    v6(&[0xfe80],                 10,  Block(C::LinkLocal),     "link-local (RFC 4291)"),
    // Deprecated, but still routes inside sites that use it.
    v6(&[0xfec0],                 10,  Block(C::Private),       "site-local (RFC 3879)"),
    v6(&[0xff00],                 8,   Block(C::Multicast),     "multicast (RFC 4291)"),
    // Not global unicast (RFC 4291 section 2.4).
    v6(&[],                       3,   Block(C::Reserved),      "outside 2000::/3"),
    v6(&[0x4000],                 2,   Block(C::Reserved),      "outside 2000::/3"),
    v6(&[0x8000],                 1,   Block(C::Reserved),      "outside 2000::/3"),
];

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
    fn loopback_names_are_refused_without_a_resolver() {
        // `localhost.` is sent to DNS rather than /etc/hosts by getaddrinfo: the name
        // itself must decide, whatever a resolver answers (or fails to).
        for url in [
            "https://localhost/v.mp4",
            "https://localhost./v.mp4",
            "https://LOCALHOST:8443/v.mp4",
            "https://videos.localhost/v.mp4",
            "https://a.b.localhost../v.mp4",
            "https://ｌｏｃａｌｈｏｓｔ/v.mp4",
        ] {
            assert!(
                matches!(check(&strict(), url), Err(Blocked::LoopbackName(_))),
                "{url}: {:?}",
                check(&strict(), url)
            );
        }
        for url in ["https://localhost.example.com/", "https://notlocalhost/"] {
            assert_eq!(check(&strict(), url), Ok(()), "{url}");
        }
        let local = UrlPolicy {
            allow_http: true,
            allow_loopback: true,
            allowed_hosts: vec![],
        };
        assert_eq!(check(&local, "http://localhost:8090/v.mp4"), Ok(()));
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

    /// A table address as the integer the range checks use, and back.
    trait Addr: Bits + fmt::Display {
        fn from_bits_u128(bits: u128) -> Self;
    }

    impl Addr for Ipv4Addr {
        fn from_bits_u128(bits: u128) -> Self {
            Ipv4Addr::from_bits(u32::try_from(bits).unwrap())
        }
    }

    impl Addr for Ipv6Addr {
        fn from_bits_u128(bits: u128) -> Self {
            Ipv6Addr::from_bits(bits)
        }
    }

    fn first_last<A: Addr, R>(r: &Range<A, R>) -> (A, A) {
        let host = u128::MAX
            .checked_shr(128 - A::WIDTH + u32::from(r.len))
            .unwrap_or(0);
        let first = r.net.bits() & !host;
        (A::from_bits_u128(first), A::from_bits_u128(first | host))
    }

    /// Walks a table entry by entry: the first and the last address of each range are
    /// blocked with `edge_class(entry, is_first)`, and a neighbour just outside the range
    /// that no entry covers (so public space) is allowed.
    fn walk<A: Addr, R>(
        table: &'static [Range<A, R>],
        classify: fn(A) -> Option<AddressClass>,
        edge_class: fn(&R, bool) -> AddressClass,
    ) {
        let covered = |bits: u128| table.iter().any(|o| o.contains(A::from_bits_u128(bits)));
        for r in table {
            let label = format!("{}/{} {}", r.net, r.len, r.name);
            let (first, last) = first_last(r);
            for (edge, is_first) in [(first, true), (last, false)] {
                let got = classify(edge);
                let inner = table.iter().any(|o| o.len > r.len && o.contains(edge));
                if inner {
                    // A narrower entry holding this edge shares it as its own edge (ranges
                    // are aligned), so that entry's walk checks the class.
                    assert!(got.is_some(), "{label}: {edge} allowed");
                } else {
                    assert_eq!(got, Some(edge_class(&r.rule, is_first)), "{label}: {edge}");
                }
            }
            let max = u128::MAX >> (128 - A::WIDTH);
            let before = first.bits().checked_sub(1);
            let after = Some(last.bits()).filter(|b| *b < max).map(|b| b + 1);
            for n in [before, after].into_iter().flatten() {
                if !covered(n) {
                    let n = A::from_bits_u128(n);
                    assert_eq!(classify(n), None, "{label}: neighbour {n}");
                }
            }
        }
    }

    #[test]
    fn v4_table_walked_entry_by_entry() {
        walk(V4_RANGES, classify_v4, |class, _| *class);
    }

    #[test]
    fn v6_table_walked_entry_by_entry() {
        // An embedding range's first address embeds 0.0.0.0, its last 255.255.255.255.
        walk(V6_RANGES, classify_v6, |rule, is_first| {
            match (rule, is_first) {
                (Block(class), _) => *class,
                (Embeds { .. }, true) => C::Unspecified,
                (Embeds { .. }, false) => C::Broadcast,
            }
        });
    }

    #[test]
    fn v6_embedding_ranges_judge_the_embedded_address() {
        for r in V6_RANGES {
            let Embeds { at, public } = r.rule else {
                continue;
            };
            let with = |v4: [u8; 4]| {
                let shift = 96 - u32::from(at);
                let bits = r.net.bits() | (u128::from(Ipv4Addr::from(v4).to_bits()) << shift);
                Ipv6Addr::from_bits(bits)
            };
            let label = format!("{}/{} {}", r.net, r.len, r.name);
            for (v4, class) in [
                ([127, 0, 0, 1], Some(C::Loopback)),
                ([10, 1, 2, 3], Some(C::Private)),
                ([169, 254, 169, 254], Some(C::LinkLocal)),
                ([192, 0, 2, 1], Some(C::Documentation)),
                ([8, 8, 8, 8], public),
            ] {
                let ip = with(v4);
                assert_eq!(classify_v6(ip), class, "{label}: {ip}");
            }
        }
    }

    #[test]
    fn tables_are_well_formed() {
        fn check<A: Addr, R>(table: &[Range<A, R>]) {
            for (i, r) in table.iter().enumerate() {
                assert!(u32::from(r.len) <= A::WIDTH, "{}/{}", r.net, r.len);
                let (first, _) = first_last(r);
                // A typo in the network (host bits set) would silently shift the range.
                assert_eq!(
                    first.bits(),
                    r.net.bits(),
                    "{}/{} has host bits",
                    r.net,
                    r.len
                );
                assert!(!r.name.is_empty());
                assert!(
                    table[..i]
                        .iter()
                        .all(|o| (o.net.bits(), o.len) != (r.net.bits(), r.len)),
                    "{}/{} twice",
                    r.net,
                    r.len
                );
            }
        }
        check(V4_RANGES);
        check(V6_RANGES);
    }

    #[test]
    fn special_purpose_regressions() {
        let table: &[(&str, Option<&str>)] = &[
            // Let through before the table.
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Some("reserved")), // Teredo
            ("2001::", Some("reserved")),
            ("2001:2::1", Some("benchmarking")),
            ("2001:20::1", Some("reserved")), // ORCHIDv2
            ("2001:1::1", Some("reserved")),  // PCP anycast, inside the /23
            ("2001:3::1", Some("reserved")),  // AMT, inside the /23
            ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", Some("reserved")),
            ("3fff::1", Some("documentation")),
            ("3fff:fff:ffff::1", Some("documentation")),
            ("5f00::1", Some("reserved")),
            ("100::1", Some("reserved")),
            ("100:0:0:1::1", Some("reserved")),
            ("64:ff9b:1::a00:1", Some("private")),
            ("fec0::1", Some("private")),
            ("4000::1", Some("reserved")),
            ("8000::1", Some("reserved")),
            ("192.88.99.1", Some("reserved")),
            ("192.0.0.9", Some("reserved")),
            ("192.0.0.170", Some("reserved")),
            ("198.18.0.1", Some("benchmarking")),
            ("198.19.255.255", Some("benchmarking")),
            ("198.51.100.7", Some("documentation")),
            ("203.0.113.7", Some("documentation")),
            // Public addresses in forms that must not be fetched as such.
            ("::ffff:8.8.8.8", Some("ipv4_mapped")),
            ("::ffff:93.184.215.14", Some("ipv4_mapped")),
            ("::8.8.8.8", Some("reserved")),
            ("::93.184.215.14", Some("reserved")),
            // Embedded private addresses still report their own class.
            ("::ffff:192.168.0.1", Some("private")),
            ("::10.0.0.1", Some("private")),
            ("2002:a00:1::", Some("private")),
            ("64:ff9b::a9fe:a9fe", Some("link_local")),
            // Globally reachable: stays allowed.
            ("64:ff9b::8.8.8.8", None),
            ("2002:808:808::1", None),
            ("2001:200::1", None),
            ("2001:db9::1", None),
            ("3fff:1000::1", None),
            ("2620:4f:8000::1", None),
            ("192.31.196.1", None),
            ("192.52.193.1", None),
            ("192.175.48.1", None),
            ("192.0.1.255", None),
            ("192.88.100.1", None),
            ("1.1.1.1", None),
        ];
        for (addr, class) in table {
            let ip: IpAddr = addr.parse().unwrap();
            assert_eq!(classify(ip).map(AddressClass::as_str), *class, "{addr}");
        }
        // Through the URL path too.
        let p = strict();
        for (url, class) in [
            (
                "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
                "reserved",
            ),
            ("https://[2001:2::1]/", "benchmarking"),
            ("https://[2001:20::1]/", "reserved"),
            ("https://[3fff::1]/", "documentation"),
            ("https://[::ffff:8.8.8.8]/", "ipv4_mapped"),
            ("https://[::8.8.8.8]/", "reserved"),
        ] {
            match check(&p, url) {
                Err(Blocked::Address { class: c, .. }) => assert_eq!(c.as_str(), class, "{url}"),
                other => panic!("{url}: expected {class}, got {other:?}"),
            }
        }
    }

    /// The tables' edges written out independently of them, so a mistyped length or
    /// network fails here even where the walk cannot see it (a range nested in a wider
    /// one, or shrunk with public space on both sides).
    #[test]
    fn range_edges_written_out() {
        let blocked: &[(&str, &str)] = &[
            ("0.255.255.255", "unspecified"),
            ("10.255.255.255", "private"),
            ("100.127.255.255", "shared_cgnat"),
            ("127.255.255.255", "loopback"),
            ("169.254.255.255", "link_local"),
            ("172.31.255.255", "private"),
            ("192.0.0.255", "reserved"),
            ("192.0.2.255", "documentation"),
            ("192.88.99.255", "reserved"),
            ("192.168.255.255", "private"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.255", "documentation"),
            ("203.0.113.255", "documentation"),
            ("239.255.255.255", "multicast"),
            ("255.255.255.254", "reserved"),
            ("::ffff:ffff", "broadcast"),
            ("::ffff:255.255.255.255", "broadcast"),
            ("64:ff9b::ffff:ffff", "broadcast"),
            ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", "private"),
            ("100::ffff:ffff:ffff:ffff", "reserved"),
            ("100::1:ffff:ffff:ffff:ffff", "reserved"),
            ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"),
            ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"),
            ("2001:2:0:ffff:ffff:ffff:ffff:ffff", "benchmarking"),
            ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "documentation"),
            ("2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "broadcast"),
            ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", "documentation"),
            ("4000::", "reserved"),
            ("5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"),
            ("7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"),
            ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "unique_local"),
            ("fe00::", "reserved"),
            ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "link_local"),
            ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "private"),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "multicast"),
        ];
        for (addr, class) in blocked {
            let ip: IpAddr = addr.parse().unwrap();
            assert_eq!(
                classify(ip).map(AddressClass::as_str),
                Some(*class),
                "{addr}"
            );
        }
        let public = [
            "1.0.0.0",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "191.255.255.255",
            "192.0.1.0",
            "192.0.3.0",
            "192.88.98.255",
            "192.88.100.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
            "2000::",
            "2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:200::",
            "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db9::",
            "2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2003::",
            "3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "3fff:1000::",
            "3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ];
        for addr in public {
            assert_eq!(classify(addr.parse().unwrap()), None, "{addr}");
        }
    }
}

/// Properties of the guard over generated addresses, spellings and host names.
#[cfg(test)]
mod properties {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;
    use url::Url;

    use super::*;

    fn strict() -> UrlPolicy {
        UrlPolicy::default()
    }

    /// What std already knows is not public (a partial oracle: the table knows more).
    fn std_says_special(a: Ipv4Addr) -> bool {
        let o = a.octets();
        a.is_private()
            || a.is_loopback()
            || a.is_link_local()
            || a.is_broadcast()
            || a.is_documentation()
            || a.is_unspecified()
            || a.is_multicast()
            || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10
            || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15
            || o[0] >= 240
            || o[0] == 0
    }

    /// Addresses biased towards the interesting ranges.
    fn v4() -> impl Strategy<Value = Ipv4Addr> {
        prop_oneof![
            any::<u32>().prop_map(Ipv4Addr::from),
            (
                prop_oneof![
                    Just(10u8),
                    Just(127),
                    Just(169),
                    Just(172),
                    Just(192),
                    Just(100),
                    Just(0),
                    Just(224),
                    Just(255)
                ],
                any::<[u8; 3]>()
            )
                .prop_map(|(a, [b, c, d])| Ipv4Addr::new(a, b, c, d)),
        ]
    }

    fn url_of(host: &str) -> Url {
        Url::parse(&format!("https://{host}/v.mp4")).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn whatever_std_calls_special_is_blocked(a in v4()) {
            if std_says_special(a) {
                prop_assert!(strict().check_ip(IpAddr::V4(a)).is_err(), "{} passed", a);
            }
        }

        #[test]
        fn every_spelling_of_an_address_gets_the_same_verdict(a in v4()) {
            let verdict = strict().check_ip(IpAddr::V4(a)).is_ok();
            let n = u32::from(a);
            let o = a.octets();
            let spellings = [
                a.to_string(),
                n.to_string(),
                format!("0x{n:x}"),
                format!("0{:o}.0{:o}.0{:o}.0{:o}", o[0], o[1], o[2], o[3]),
                format!("{a}."),
                format!("{}.{}", o[0], (u32::from(o[1]) << 16) | (u32::from(o[2]) << 8) | u32::from(o[3])),
            ];
            for s in &spellings {
                prop_assert_eq!(strict().check_url(&url_of(s)).is_ok(), verdict, "{} vs {}", s, a);
            }
            // The IPv4-mapped form is never fetched: the plain address is the one to use.
            let mapped = url_of(&format!("[::ffff:{a}]"));
            prop_assert!(strict().check_url(&mapped).is_err());
        }

        #[test]
        fn an_embedded_address_is_judged_like_itself(a in v4()) {
            let blocked = strict().check_ip(IpAddr::V4(a)).is_err();
            let o = a.octets();
            let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([o[0], o[1]]), u16::from_be_bytes([o[2], o[3]]));
            let six_to_four = Ipv6Addr::new(0x2002, u16::from_be_bytes([o[0], o[1]]), u16::from_be_bytes([o[2], o[3]]), 0, 0, 0, 0, 1);
            if blocked {
                prop_assert!(strict().check_ip(IpAddr::V6(nat64)).is_err(), "{}", nat64);
                prop_assert!(strict().check_ip(IpAddr::V6(six_to_four)).is_err(), "{}", six_to_four);
            }
        }

        #[test]
        fn allowing_loopback_allows_loopback_and_nothing_else(bits in any::<u128>(), a in v4(), v6 in any::<bool>()) {
            let addr = if v6 { IpAddr::V6(Ipv6Addr::from(bits)) } else { IpAddr::V4(a) };
            let local = UrlPolicy { allow_loopback: true, ..UrlPolicy::default() };
            let strict_ok = strict().check_ip(addr).is_ok();
            let local_ok = local.check_ip(addr).is_ok();
            if strict_ok != local_ok {
                prop_assert_eq!(classify(addr), Some(AddressClass::Loopback), "{}", addr);
            }
            prop_assert!(!strict_ok || local_ok, "allowing loopback refused {}", addr);
        }

        #[test]
        fn an_allowlist_admits_only_its_hosts(
            label in "[a-z0-9-]{1,12}",
            suffix in prop_oneof![Just("cdn.example"), Just("cdn.example."), Just("CDN.Example"), Just("evil.example"), Just("cdn.example.evil"), Just("xcdn.example")],
        ) {
            let policy = UrlPolicy {
                allowed_hosts: vec![HostPattern::parse("*.cdn.example").unwrap()],
                ..UrlPolicy::default()
            };
            let host = format!("{label}.{suffix}");
            let Ok(url) = Url::parse(&format!("https://{host}/v.mp4")) else { return Ok(()) };
            let normalised = suffix.trim_end_matches('.').to_ascii_lowercase();
            let expected = normalised == "cdn.example";
            let got = policy.check_url(&url);
            prop_assert_eq!(got.is_ok(), expected, "{} -> {:?}", host, got);
            // The apex is not a subdomain.
            prop_assert!(policy.check_url(&url_of("cdn.example")).is_err());
        }

        #[test]
        fn arbitrary_urls_never_panic(raw in "[ -~]{0,80}") {
            if let Ok(url) = Url::parse(&raw) {
                let _ = strict().check_url(&url);
            }
            if let Ok(url) = Url::parse(&format!("https://{raw}")) {
                let _ = strict().check_url(&url);
            }
        }
    }
}
