//! Source country (and autonomous system, where a database has it) of a
//! request IP, from one or more MaxMind DB files. Reads the GeoIP2/GeoLite2
//! layout (`country.iso_code`, falling back to `registered_country`), the
//! DB-IP lite layout of the `@ip-location-db` packages (`country_code`) and
//! the ASN layout (`autonomous_system_number`/`_organization`); each field is
//! taken from the first database that has it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a database could not be used.
#[derive(Debug, thiserror::Error)]
#[error("GeoIP database {path}: {message}")]
pub struct GeoIpError {
    pub path: PathBuf,
    pub message: String,
}

/// What a lookup found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub country: Option<String>,
    pub asn: Option<u32>,
    pub as_org: Option<String>,
}

#[derive(Deserialize)]
struct Iso<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<Iso<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<Iso<'a>>,
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
}

struct Db {
    name: String,
    reader: maxminddb::Reader<Vec<u8>>,
}

/// The configured databases, in lookup order.
#[derive(Default)]
pub struct GeoIp {
    dbs: Vec<Db>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.dbs.iter().map(|d| &d.name)).finish()
    }
}

impl GeoIp {
    /// No database: every lookup finds nothing.
    pub fn none() -> GeoIp {
        GeoIp::default()
    }

    /// Opens each file; says which one is unreadable or not a MaxMind DB.
    pub fn open(paths: &[PathBuf]) -> Result<GeoIp, GeoIpError> {
        let mut g = GeoIp::default();
        for p in paths {
            let bytes = std::fs::read(p).map_err(|e| GeoIpError { path: p.clone(), message: e.to_string() })?;
            g.add(&p.display().to_string(), bytes).map_err(|message| GeoIpError { path: p.clone(), message })?;
        }
        Ok(g)
    }

    /// Adds a database from memory (the emulator's, or a test's).
    pub fn add(&mut self, name: &str, bytes: Vec<u8>) -> Result<(), String> {
        let reader = maxminddb::Reader::from_source(bytes).map_err(|e| {
            format!("not a MaxMind DB file ({e}); GeoLite2, GeoIP2 and DB-IP .mmdb files are supported")
        })?;
        self.dbs.push(Db { name: name.to_string(), reader });
        Ok(())
    }

    /// With the emulator's own database (what the demo uses).
    pub fn emulator() -> GeoIp {
        let mut g = GeoIp::default();
        g.add("emulator", super::mmdb::emulator_database()).expect("the emulator database is valid");
        g
    }

    pub fn is_empty(&self) -> bool {
        self.dbs.is_empty()
    }

    /// Names of the databases, with their type, for logs and `rules list`.
    pub fn describe(&self) -> Vec<String> {
        self.dbs.iter().map(|d| format!("{} ({})", d.name, d.reader.metadata().database_type)).collect()
    }

    /// Looks `ip` up in every database; unparsable addresses and misses give an empty location.
    pub fn lookup(&self, ip: &str) -> Location {
        let mut loc = Location::default();
        if self.dbs.is_empty() {
            return loc;
        }
        let Ok(addr) = ip.trim().parse::<IpAddr>() else { return loc };
        for db in &self.dbs {
            // An IPv6 address in an IPv4-only database is an error, not a miss: treat it as a miss.
            let Ok(found) = db.reader.lookup(addr) else { continue };
            let Ok(Some(rec)) = found.decode::<Record>() else { continue };
            if loc.country.is_none() {
                let country = rec
                    .country
                    .and_then(|c| c.iso_code)
                    .or(rec.country_code)
                    .or(rec.registered_country.and_then(|c| c.iso_code));
                loc.country = country.filter(|c| !c.is_empty()).map(str::to_ascii_uppercase);
            }
            if loc.asn.is_none() {
                loc.asn = rec.autonomous_system_number;
            }
            if loc.as_org.is_none() {
                loc.as_org = rec.autonomous_system_organization.map(str::to_string);
            }
            if loc.country.is_some() && loc.asn.is_some() {
                break;
            }
        }
        loc
    }
}

/// Where `scripts/fetch-geoip-test-data.sh` puts the third-party test databases.
pub fn test_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/geoip-test-data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_database_gives_country_and_asn_and_misses_quietly() {
        let g = GeoIp::emulator();
        let loc = g.lookup("86.40.1.2");
        assert_eq!(loc.country.as_deref(), Some("IE"));
        assert!(loc.asn.is_some_and(|a| a >= 64_512));
        assert!(loc.as_org.as_deref().is_some_and(|o| o.contains("IE")));
        assert_eq!(g.lookup("10.0.0.1"), Location::default());
        assert_eq!(g.lookup("not an ip"), Location::default());
        assert_eq!(g.lookup("2001:db8::1"), Location::default());
        assert_eq!(GeoIp::none().lookup("86.40.1.2"), Location::default());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bogus.mmdb");
        std::fs::write(&p, b"hello").unwrap();
        let e = GeoIp::open(std::slice::from_ref(&p)).unwrap_err().to_string();
        assert!(e.contains("bogus.mmdb") && e.contains("not a MaxMind DB"), "{e}");
        let e = GeoIp::open(&[dir.path().join("missing.mmdb")]).unwrap_err().to_string();
        assert!(e.contains("missing.mmdb"), "{e}");
    }

    /// MaxMind's official test databases and the DB-IP lite file, fetched by
    /// `scripts/fetch-geoip-test-data.sh` (skipped with a note when absent).
    fn third_party(name: &str) -> Option<PathBuf> {
        let p = test_data_dir().join(name);
        if p.exists() {
            Some(p)
        } else {
            eprintln!("skipping: {} missing; run scripts/fetch-geoip-test-data.sh", p.display());
            None
        }
    }

    #[test]
    fn reads_maxmind_official_test_databases() {
        let Some(city) = third_party("GeoIP2-City-Test.mmdb") else { return };
        let Some(asn) = third_party("GeoLite2-ASN-Test.mmdb") else { return };
        let g = GeoIp::open(&[city, asn]).unwrap();
        // Values from MaxMind's test data (source-data/GeoIP2-City-Test.json, GeoLite2-ASN-Test.json).
        assert_eq!(g.lookup("81.2.69.142").country.as_deref(), Some("GB"));
        assert_eq!(g.lookup("89.160.20.128").country.as_deref(), Some("SE"));
        assert_eq!(g.lookup("2001:218::1").country.as_deref(), Some("JP"));
        let loc = g.lookup("1.128.0.1");
        assert_eq!(loc.asn, Some(1221));
        assert_eq!(loc.as_org.as_deref(), Some("Telstra Pty Ltd"));
        let Some(country) = third_party("GeoLite2-Country-Test.mmdb") else { return };
        let g = GeoIp::open(&[country]).unwrap();
        assert_eq!(g.lookup("81.2.69.142").country.as_deref(), Some("GB"));
    }

    #[test]
    fn reads_the_dbip_lite_country_layout() {
        let Some(dbip) = third_party("dbip-country-ipv4.mmdb") else { return };
        let g = GeoIp::open(&[dbip]).unwrap();
        // A long-stable allocation: Google's public DNS resolver.
        assert_eq!(g.lookup("8.8.8.8").country.as_deref(), Some("US"));
        assert_eq!(g.lookup("10.0.0.1").country, None);
    }
}
