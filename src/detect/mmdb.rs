//! A small writer of the MaxMind DB format (binary search tree, data section,
//! metadata), enough to turn the emulator's country table into a GeoIP2
//! Country style database the detector reads like any GeoLite2 file. Spec:
//! <https://maxmind.github.io/MaxMind-DB/>. IPv4 only, 24-bit records.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

/// A value of the MaxMind DB data section.
#[derive(Debug, Clone, PartialEq)]
pub enum DbValue {
    Str(String),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(BTreeMap<String, DbValue>),
    Array(Vec<DbValue>),
}

impl From<&str> for DbValue {
    fn from(s: &str) -> Self {
        DbValue::Str(s.to_string())
    }
}

/// Why a database could not be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MmdbError {
    #[error("invalid network {0:?}: expected a.b.c.d/len")]
    BadNetwork(String),
    #[error("networks {0} and {1} overlap")]
    Overlap(String, String),
    #[error("database too large for 24-bit records")]
    TooLarge,
}

const TYPE_STRING: u8 = 2;
const TYPE_U16: u8 = 5;
const TYPE_U32: u8 = 6;
const TYPE_MAP: u8 = 7;
const TYPE_U64: u8 = 9;
const TYPE_ARRAY: u8 = 11;

fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    let (bits, extra): (u8, Vec<u8>) = match size {
        0..=28 => (size as u8, vec![]),
        29..=284 => (29, vec![(size - 29) as u8]),
        285..=65_820 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec()),
    };
    if kind <= 7 {
        out.push(kind << 5 | bits);
    } else {
        out.push(bits);
        out.push(kind - 7);
    }
    out.extend_from_slice(&extra);
}

fn uint(out: &mut Vec<u8>, kind: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

fn encode(out: &mut Vec<u8>, v: &DbValue) {
    match v {
        DbValue::Str(s) => {
            control(out, TYPE_STRING, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        DbValue::U16(n) => uint(out, TYPE_U16, u64::from(*n)),
        DbValue::U32(n) => uint(out, TYPE_U32, u64::from(*n)),
        DbValue::U64(n) => uint(out, TYPE_U64, *n),
        DbValue::Map(m) => {
            control(out, TYPE_MAP, m.len());
            for (k, v) in m {
                encode(out, &DbValue::Str(k.clone()));
                encode(out, v);
            }
        }
        DbValue::Array(a) => {
            control(out, TYPE_ARRAY, a.len());
            for v in a {
                encode(out, v);
            }
        }
    }
}

/// A node of the search tree under construction: each side is empty, a child node, or a data record.
#[derive(Clone, Copy)]
enum Slot {
    Empty,
    Node(usize),
    Data(usize),
}

fn parse_cidr(cidr: &str) -> Result<(u32, u8), MmdbError> {
    let bad = || MmdbError::BadNetwork(cidr.to_string());
    let (ip, len) = cidr.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if len > 32 || (len < 32 && u32::from(ip) & (u32::MAX >> len) != 0) {
        return Err(bad());
    }
    Ok((u32::from(ip), len))
}

/// Writes an IPv4 MaxMind DB mapping each network to its record. Records that
/// are equal are stored once.
pub fn write_ipv4(
    database_type: &str,
    description: &str,
    networks: &[(&str, DbValue)],
    build_epoch: u64,
) -> Result<Vec<u8>, MmdbError> {
    // Data section, deduplicated.
    let mut data = Vec::new();
    let mut offsets: Vec<usize> = Vec::new();
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    for (_, v) in networks {
        let mut enc = Vec::new();
        encode(&mut enc, v);
        let off = *seen.entry(enc.clone()).or_insert_with(|| {
            let o = data.len();
            data.extend_from_slice(&enc);
            o
        });
        offsets.push(off);
    }
    // Tree: node 0 is the root; insert each network as a path of its prefix bits.
    let mut nodes: Vec<[Slot; 2]> = vec![[Slot::Empty; 2]];
    let mut owner: HashMap<(usize, usize), &str> = HashMap::new();
    for (i, (cidr, _)) in networks.iter().enumerate() {
        let (ip, len) = parse_cidr(cidr)?;
        if len == 0 {
            return Err(MmdbError::BadNetwork(cidr.to_string()));
        }
        let mut node = 0usize;
        for depth in 0..len {
            let bit = (ip >> (31 - depth) & 1) as usize;
            let last = depth + 1 == len;
            match (nodes[node][bit], last) {
                (Slot::Empty, true) => {
                    nodes[node][bit] = Slot::Data(offsets[i]);
                    owner.insert((node, bit), cidr);
                }
                (Slot::Empty, false) => {
                    nodes.push([Slot::Empty; 2]);
                    let child = nodes.len() - 1;
                    nodes[node][bit] = Slot::Node(child);
                    node = child;
                }
                (Slot::Node(child), false) => node = child,
                (Slot::Node(_), true) => return Err(MmdbError::Overlap(cidr.to_string(), "a smaller network".into())),
                (Slot::Data(_), _) => {
                    let other = owner.get(&(node, bit)).copied().unwrap_or("?");
                    return Err(MmdbError::Overlap(cidr.to_string(), other.to_string()));
                }
            }
        }
    }
    let node_count = nodes.len();
    let max = node_count + 16 + data.len();
    if max >= 1 << 24 {
        return Err(MmdbError::TooLarge);
    }
    let mut out = Vec::with_capacity(node_count * 6 + 16 + data.len() + 256);
    for n in &nodes {
        for slot in n {
            let v = match *slot {
                Slot::Empty => node_count,
                Slot::Node(c) => c,
                Slot::Data(off) => node_count + 16 + off,
            } as u32;
            out.extend_from_slice(&v.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let mut meta = BTreeMap::new();
    meta.insert("binary_format_major_version".into(), DbValue::U16(2));
    meta.insert("binary_format_minor_version".into(), DbValue::U16(0));
    meta.insert("build_epoch".into(), DbValue::U64(build_epoch));
    meta.insert("database_type".into(), database_type.into());
    meta.insert("description".into(), DbValue::Map([("en".to_string(), description.into())].into()));
    meta.insert("ip_version".into(), DbValue::U16(4));
    meta.insert("languages".into(), DbValue::Array(vec!["en".into()]));
    meta.insert("node_count".into(), DbValue::U32(node_count as u32));
    meta.insert("record_size".into(), DbValue::U16(24));
    encode(&mut out, &DbValue::Map(meta));
    Ok(out)
}

/// Fake but stable autonomous systems for the emulator's ranges (private-use ASNs).
const EMULATOR_ASN_BASE: u32 = 64_512;

/// A GeoIP2-Country style database (with ASN fields) of the emulator's own
/// country ranges, so the demo and tests resolve every address it emits
/// without downloading anything.
pub fn emulator_database() -> Vec<u8> {
    let networks: Vec<(&str, DbValue)> = crate::mock::country_ranges()
        .iter()
        .enumerate()
        .map(|(i, &(country, cidr))| {
            let mut c = BTreeMap::new();
            c.insert("iso_code".to_string(), country.into());
            let mut rec = BTreeMap::new();
            rec.insert("country".to_string(), DbValue::Map(c));
            rec.insert("autonomous_system_number".to_string(), DbValue::U32(EMULATOR_ASN_BASE + i as u32));
            rec.insert("autonomous_system_organization".to_string(), DbValue::Str(format!("Emulated ISP {country}")));
            (cidr, DbValue::Map(rec))
        })
        .collect();
    write_ipv4("tines-audit-emulator-Country", "Country ranges of the tines-audit emulator", &networks, 1_700_000_000)
        .expect("the emulator's ranges are valid and disjoint (checked by its own tests)")
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[derive(serde::Deserialize)]
    struct Rec<'a> {
        #[serde(borrow)]
        country: Country<'a>,
        autonomous_system_number: u32,
    }
    #[derive(serde::Deserialize)]
    struct Country<'a> {
        iso_code: &'a str,
    }

    #[test]
    fn emulator_database_reads_back_with_maxminddb_for_every_range() {
        let bytes = emulator_database();
        let reader = maxminddb::Reader::from_source(bytes).unwrap();
        reader.verify().unwrap();
        assert_eq!(reader.metadata().database_type, "tines-audit-emulator-Country");
        for (i, &(country, cidr)) in crate::mock::country_ranges().iter().enumerate() {
            let (base, len) = parse_cidr(cidr).unwrap();
            let last = base | (u32::MAX >> len);
            for ip in [base, base + 1, last] {
                let r = reader.lookup(IpAddr::V4(Ipv4Addr::from(ip))).unwrap();
                let rec: Rec = r.decode().unwrap().unwrap_or_else(|| panic!("{cidr} has no data"));
                assert_eq!(rec.country.iso_code, country, "{}", Ipv4Addr::from(ip));
                assert_eq!(rec.autonomous_system_number, EMULATOR_ASN_BASE + i as u32);
            }
            let outside = reader.lookup(IpAddr::V4(Ipv4Addr::from(last.wrapping_add(1)))).unwrap();
            if crate::mock::country_of(Ipv4Addr::from(last.wrapping_add(1))).is_none() {
                assert!(!outside.has_data(), "just past {cidr} is not in the database");
            }
        }
        assert!(!reader.lookup("10.1.2.3".parse().unwrap()).unwrap().has_data());
    }

    #[test]
    fn long_strings_and_big_maps_use_extended_sizes() {
        let long = "x".repeat(70_000);
        let nets = vec![("8.8.8.0/24", DbValue::Map([("note".to_string(), DbValue::Str(long.clone()))].into()))];
        let reader = maxminddb::Reader::from_source(write_ipv4("t", "d", &nets, 0).unwrap()).unwrap();
        let v: BTreeMap<String, String> = reader.lookup("8.8.8.8".parse().unwrap()).unwrap().decode().unwrap().unwrap();
        assert_eq!(v["note"].len(), 70_000);
    }

    #[test]
    fn overlapping_or_malformed_networks_are_refused() {
        let v = || DbValue::from("x");
        assert!(matches!(
            write_ipv4("t", "d", &[("1.0.0.0/8", v()), ("1.2.0.0/16", v())], 0),
            Err(MmdbError::Overlap(..))
        ));
        assert!(matches!(write_ipv4("t", "d", &[("1.2.3.4/8", v())], 0), Err(MmdbError::BadNetwork(_))));
        assert!(matches!(write_ipv4("t", "d", &[("nope", v())], 0), Err(MmdbError::BadNetwork(_))));
    }
}
