//! Where a request came from: the country of a source IP, for the country
//! filter and the console. A lookup is a small trait so that the search does
//! not care whether the answer comes from the detector's GeoIP databases or,
//! for the emulator's synthetic addresses, from the emulator's own table.

use std::net::IpAddr;

/// Country (ISO 3166-1 alpha-2, upper case) of an IP address, if known.
pub trait CountryLookup: Send + Sync {
    fn country(&self, ip: &str) -> Option<String>;
    /// Whether any address can have a country (false without a database).
    fn available(&self) -> bool {
        true
    }
}

/// No database: no address has a country, so a country filter matches nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCountries;

impl CountryLookup for NoCountries {
    fn country(&self, _ip: &str) -> Option<String> {
        None
    }
    fn available(&self) -> bool {
        false
    }
}

/// The emulator's address plan ([`crate::mock::country_ranges`]): right for the
/// demo and the tests, and knows nothing of real addresses.
#[derive(Debug, Default, Clone, Copy)]
pub struct EmulatorCountries;

impl CountryLookup for EmulatorCountries {
    fn country(&self, ip: &str) -> Option<String> {
        match ip.parse::<IpAddr>().ok()? {
            IpAddr::V4(v4) => crate::mock::country_of(v4).map(str::to_string),
            IpAddr::V6(_) => None,
        }
    }
}

/// The configured GeoIP databases (`[detect] geoip`), as the detector uses them.
impl CountryLookup for crate::detect::geoip::GeoIp {
    fn country(&self, ip: &str) -> Option<String> {
        self.lookup(ip).country.map(|c| c.to_ascii_uppercase())
    }
    fn available(&self) -> bool {
        !self.is_empty()
    }
}

/// The lookup for a configuration: the GeoIP databases of `[detect]` when there are any;
/// otherwise the emulator's table when every tenant is the emulator (a loopback `http://`
/// address); otherwise none (and a country filter says it needs a database).
pub fn for_settings(settings: Option<&crate::config::Settings>) -> std::sync::Arc<dyn CountryLookup> {
    if let Some(geo) = settings.and_then(|s| s.detect.as_ref()).and_then(|d| d.geoip().ok()).filter(|g| !g.is_empty()) {
        return std::sync::Arc::new(geo);
    }
    let emulated = settings
        .is_some_and(|s| !s.tenants.is_empty() && s.tenants.iter().all(|t| t.endpoint.base().scheme() == "http"));
    if emulated { std::sync::Arc::new(EmulatorCountries) } else { std::sync::Arc::new(NoCountries) }
}

/// The same choice from a config file's parts, for readers that build no settings
/// (they need no API key): the GeoIP databases of `[detect]`, then the emulator's
/// table when every tenant is the emulator, then none.
pub fn for_parts(geoip: &[std::path::PathBuf], emulated: bool) -> std::sync::Arc<dyn CountryLookup> {
    if !geoip.is_empty()
        && let Some(geo) = crate::detect::geoip::GeoIp::open(geoip).ok().filter(|g| !g.is_empty())
    {
        return std::sync::Arc::new(geo);
    }
    if emulated { std::sync::Arc::new(EmulatorCountries) } else { std::sync::Arc::new(NoCountries) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_table_answers_for_its_ranges_only() {
        assert_eq!(EmulatorCountries.country("86.40.1.2").as_deref(), Some("IE"));
        assert_eq!(EmulatorCountries.country("10.0.0.1"), None);
        assert_eq!(EmulatorCountries.country("not an ip"), None);
        assert_eq!(NoCountries.country("86.40.1.2"), None);
    }
}
