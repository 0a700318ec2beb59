//! The synthetic tenant: who acts (users, teams), from where (country IP
//! ranges) and with what (user agents), all drawn from the seed.

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use super::rng::SplitMix64;

/// Country code → public-looking IPv4 ranges. Ranges do not overlap and avoid
/// private, shared, documentation and other reserved blocks, so a GeoIP
/// database written from this table resolves every address the mock emits.
static COUNTRY_RANGES: &[(&str, &str)] = &[
    ("US", "24.0.0.0/12"),
    ("US", "71.192.0.0/12"),
    ("US", "98.192.0.0/13"),
    ("IE", "86.40.0.0/13"),
    ("IE", "89.100.0.0/14"),
    ("IE", "37.228.192.0/18"),
    ("GB", "81.96.0.0/12"),
    ("GB", "86.128.0.0/11"),
    ("DE", "84.128.0.0/10"),
    ("DE", "91.0.0.0/11"),
    ("FR", "90.0.0.0/9"),
    ("FR", "82.64.0.0/10"),
    ("NL", "77.160.0.0/12"),
    ("NL", "84.80.0.0/13"),
    ("AU", "1.128.0.0/11"),
    ("AU", "101.160.0.0/11"),
    ("JP", "126.0.0.0/9"),
    ("JP", "60.32.0.0/12"),
    ("BR", "177.0.0.0/13"),
    ("BR", "187.0.0.0/13"),
    ("IN", "49.32.0.0/12"),
    ("IN", "117.192.0.0/11"),
    ("CA", "99.224.0.0/11"),
    ("CA", "70.24.0.0/13"),
    ("SG", "116.14.0.0/15"),
    ("SG", "175.156.0.0/15"),
];

/// Country code → IPv4 CIDR ranges the mock draws request IPs from (several rows per country).
pub fn country_ranges() -> &'static [(&'static str, &'static str)] {
    COUNTRY_RANGES
}

struct Range {
    country: &'static str,
    base: u32,
    size: u64,
}

fn parsed_ranges() -> &'static [Range] {
    static PARSED: OnceLock<Vec<Range>> = OnceLock::new();
    PARSED.get_or_init(|| {
        COUNTRY_RANGES
            .iter()
            .map(|&(country, cidr)| {
                let (ip, bits) = cidr.split_once('/').expect("table CIDR has a prefix length");
                let ip: Ipv4Addr = ip.parse().expect("table CIDR has an IPv4 address");
                let bits: u32 = bits.parse().expect("table CIDR prefix is a number");
                let size = 1u64 << (32 - bits);
                Range { country, base: u32::from(ip), size }
            })
            .collect()
    })
}

/// The country whose range in [`country_ranges`] contains `ip`.
pub fn country_of(ip: Ipv4Addr) -> Option<&'static str> {
    let ip = u64::from(u32::from(ip));
    parsed_ranges().iter().find(|r| (u64::from(r.base)..u64::from(r.base) + r.size).contains(&ip)).map(|r| r.country)
}

fn countries() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for &(c, _) in COUNTRY_RANGES {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// A usable host address in one of `country`'s ranges (never the network or broadcast address).
pub(crate) fn ip_in(country: &str, rng: &mut SplitMix64) -> u32 {
    let ranges: Vec<&Range> = parsed_ranges().iter().filter(|r| r.country == country).collect();
    let r = ranges[rng.index(ranges.len())];
    r.base + 1 + rng.below(r.size - 2) as u32
}

/// Browsers first; the last entries are API clients used by service accounts.
pub(crate) static USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
    "python-requests/2.31.0",
    "curl/8.6.0",
    "Go-http-client/1.1",
];
const BROWSERS: usize = 5;

/// Display name and e-mail local part. Names carry accents, CJK, quotes and
/// apostrophes so that string escaping is exercised by ordinary records.
static ROSTER: &[(&str, &str)] = &[
    ("Aoife Ní Bhriain", "aoife.nibhriain"),
    ("Seán O'Brien", "sean.obrien"),
    ("Zoë Müller", "zoe.mueller"),
    ("José Álvarez", "jose.alvarez"),
    ("Priya Raman", "priya.raman"),
    ("Chen Wei 陈伟", "chen.wei"),
    ("Oluwaseun \"Seun\" Adeyemi", "seun.adeyemi"),
    ("Emma Johansson", "emma.johansson"),
    ("Liam Murphy", "liam.murphy"),
    ("Noah Smith", "noah.smith"),
    ("Olivia Brown", "olivia.brown"),
    ("Hiroshi Tanaka", "hiroshi.tanaka"),
    ("Fatima Al-Sayed", "fatima.alsayed"),
    ("Lucas Silva", "lucas.silva"),
    ("Chloé Dubois", "chloe.dubois"),
    ("Mateo Rossi", "mateo.rossi"),
    ("Sophie Wagner", "sophie.wagner"),
    ("Jack Wilson", "jack.wilson"),
    ("Isla Campbell", "isla.campbell"),
    ("Arjun Mehta", "arjun.mehta"),
    ("Grace Lee", "grace.lee"),
    ("Daniel Kowalski", "daniel.kowalski"),
    ("Ava Martin", "ava.martin"),
    ("Ethan Nguyen", "ethan.nguyen"),
    ("Mia Fischer", "mia.fischer"),
    ("Tomás Ó Ceallaigh", "tomas.oceallaigh"),
];
/// How many roster people become users; two more nameless users and two
/// service accounts are added, for 25 in all.
const ROSTER_USERS: usize = 21;
static SERVICE_ACCOUNTS: &[(&str, &str)] =
    &[("SIEM Export (service)", "svc-siem-export"), ("CI \\ Deploy Bot", "svc-deploy")];
/// SSO-provisioned users without a display name; Tines renders them as `" "`.
static NAMELESS: &[&str] = &["contractor.7", "j.doe"];

pub(crate) const EMAIL_DOMAIN: &str = "acme-sec.example.com";

/// Home countries, weighted toward where a typical tenant's staff sit.
static HOME_WEIGHTS: &[(&str, u32)] = &[
    ("US", 30),
    ("IE", 20),
    ("GB", 15),
    ("DE", 6),
    ("FR", 5),
    ("NL", 5),
    ("AU", 5),
    ("CA", 5),
    ("IN", 4),
    ("JP", 2),
    ("BR", 2),
    ("SG", 1),
];

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub home: &'static str,
    pub ips: [u32; 2],
    pub agent: u8,
    pub service: bool,
    /// Relative share of the tenant's activity.
    pub weight: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Team {
    pub id: u64,
    pub name: &'static str,
}

static TEAM_NAMES: &[&str] =
    &["Security Operations", "Detection & Response", "IT \"Helpdesk\"", "Platform Engineering", "Threat Intel", "GRC"];

#[derive(Debug, Clone)]
pub(crate) struct Tenant {
    pub users: Vec<User>,
    pub teams: Vec<Team>,
}

fn weighted<'a>(rng: &mut SplitMix64, items: &'a [(&'static str, u32)]) -> &'a str {
    let total: u32 = items.iter().map(|i| i.1).sum();
    let mut x = rng.below(u64::from(total)) as u32;
    for &(c, w) in items {
        if x < w {
            return c;
        }
        x -= w;
    }
    items[0].0
}

impl Tenant {
    pub(crate) fn generate(seed: u64) -> Tenant {
        let mut rng = SplitMix64::new(seed ^ 0x7E4A_4E70_0000_0001);
        let mut people: Vec<(String, String, bool)> = {
            let mut roster: Vec<&(&str, &str)> = ROSTER.iter().collect();
            rng.shuffle(&mut roster);
            roster.into_iter().take(ROSTER_USERS).map(|&(n, e)| (n.to_string(), e.to_string(), false)).collect()
        };
        people.extend(NAMELESS.iter().map(|e| (" ".to_string(), e.to_string(), false)));
        people.extend(SERVICE_ACCOUNTS.iter().map(|&(n, e)| (n.to_string(), e.to_string(), true)));
        rng.shuffle(&mut people);

        let mut id = rng.between(5_000, 60_000);
        let mut users = Vec::with_capacity(people.len());
        for (name, local, service) in people {
            id += rng.between(1, 400);
            let home = weighted(&mut rng, HOME_WEIGHTS);
            let ips = [ip_in(home, &mut rng), ip_in(home, &mut rng)];
            let agent = if service {
                (BROWSERS + rng.index(USER_AGENTS.len() - BROWSERS)) as u8
            } else {
                rng.index(BROWSERS) as u8
            };
            // A few people do most of the work, as in any real tenant.
            let weight = if service { 40 } else { [1, 2, 3, 5, 8, 13, 21][rng.index(7)] };
            users.push(User { id, name, email: format!("{local}@{EMAIL_DOMAIN}"), home, ips, agent, service, weight });
        }

        let mut team_id = rng.between(1_000, 9_000);
        let teams = TEAM_NAMES
            .iter()
            .map(|&name| {
                team_id += rng.between(1, 50);
                Team { id: team_id, name }
            })
            .collect();
        Tenant { users, teams }
    }

    /// Request IP for one event of `user`: mostly one of their home addresses,
    /// now and then somewhere else (travel, VPN), which is what "login from an
    /// unexpected country" rules look for.
    pub(crate) fn ip_for(&self, user: usize, rng: &mut SplitMix64) -> u32 {
        let u = &self.users[user];
        let home = u.ips[rng.index(2)];
        if u.service || !rng.chance(0.04) {
            return home;
        }
        let away: Vec<&str> = countries().into_iter().filter(|&c| c != u.home).collect();
        ip_in(away[rng.index(away.len())], rng)
    }

    pub(crate) fn agent_for(&self, user: usize, rng: &mut SplitMix64) -> u8 {
        let u = &self.users[user];
        if u.service || !rng.chance(0.08) { u.agent } else { rng.index(BROWSERS) as u8 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_reserved(ip: Ipv4Addr) -> bool {
        let o = ip.octets();
        ip.is_private()
            || ip.is_loopback()
            || ip.is_link_local()
            || ip.is_documentation()
            || ip.is_multicast()
            || ip.is_broadcast()
            || o[0] == 0
            || o[0] >= 240
            || (o[0] == 100 && (64..128).contains(&o[1]))
            || (o[0] == 198 && (18..20).contains(&o[1]))
    }

    #[test]
    fn country_ranges_are_disjoint_public_and_resolvable() {
        let r = parsed_ranges();
        for (i, a) in r.iter().enumerate() {
            assert_eq!(u64::from(a.base) % a.size, 0, "{} is not aligned", COUNTRY_RANGES[i].1);
            assert!(!is_reserved(Ipv4Addr::from(a.base)));
            assert!(!is_reserved(Ipv4Addr::from((u64::from(a.base) + a.size - 1) as u32)));
            for b in &r[i + 1..] {
                let (a0, a1) = (u64::from(a.base), u64::from(a.base) + a.size);
                let (b0, b1) = (u64::from(b.base), u64::from(b.base) + b.size);
                assert!(a1 <= b0 || b1 <= a0, "{} overlaps {}", a.country, b.country);
            }
        }
        assert_eq!(country_of(Ipv4Addr::new(86, 40, 1, 2)), Some("IE"));
        assert_eq!(country_of(Ipv4Addr::new(10, 0, 0, 1)), None);
        let mut rng = SplitMix64::new(3);
        for &(c, _) in COUNTRY_RANGES {
            for _ in 0..50 {
                assert_eq!(country_of(Ipv4Addr::from(ip_in(c, &mut rng))), Some(c));
            }
        }
    }

    #[test]
    fn tenant_has_25_users_with_two_blank_names_and_unique_ids() {
        let t = Tenant::generate(9);
        assert_eq!(t.users.len(), 25);
        assert_eq!(t.users.iter().filter(|u| u.name == " ").count(), 2);
        let mut ids: Vec<u64> = t.users.iter().map(|u| u.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 25);
        for u in &t.users {
            assert_eq!(country_of(Ipv4Addr::from(u.ips[0])), Some(u.home));
        }
        assert!(t.teams.len() >= 4);
    }
}
