//! What the commands that only read the journal (search, report, `state show`
//! and `state export`) take from a config file: the data directory and, for
//! the country lookup, the tenants' addresses and the GeoIP databases. They
//! need no secret, so they never ask for an API key or token, and a variable
//! the file uses only for a secret may be unset.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{ConfigError, RawConfig};
use crate::query::CountryLookup;
use crate::source::tines::endpoint::Endpoint;

/// A config file as a reader sees it.
pub struct ReaderConfig {
    pub data_dir: PathBuf,
    pub geo: Arc<dyn CountryLookup>,
}

/// Reads the parts of a config file a reader uses; an unset `${VAR}` is an error only there.
pub fn load(path: &Path) -> Result<ReaderConfig, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let unset = RefCell::new(Vec::new());
    // An unset variable stays written as `${VAR}`, so the fields used below can tell.
    let env = |k: &str| {
        Some(std::env::var(k).unwrap_or_else(|_| {
            unset.borrow_mut().push(k.to_string());
            format!("${{{k}}}")
        }))
    };
    let raw = RawConfig::parse(&text, &path.display().to_string(), &env)?;
    let unset = unset.into_inner();
    let check = |field: &str, value: &str| -> Result<(), ConfigError> {
        match unset.iter().find(|v| value.contains(&format!("${{{v}}}"))) {
            Some(var) => {
                Err(ConfigError::Invalid(format!("{}: {field}: environment variable {var} is not set", path.display())))
            }
            None => Ok(()),
        }
    };
    let data_dir = raw.data_dir.clone().unwrap_or_else(|| crate::config::DEFAULT_DATA_DIR.into());
    check("data_dir", &data_dir.to_string_lossy())?;
    let geoip = match &raw.detect {
        Some(d) if d.enabled != Some(false) => d.geoip.clone(),
        _ => Vec::new(),
    };
    for g in &geoip {
        check("detect.geoip", &g.to_string_lossy())?;
    }
    // Only whether every tenant is the emulator matters here; an address that does not parse is not.
    let emulated = !raw.tenants.is_empty()
        && raw.tenants.iter().all(|t| {
            t.domain.as_deref().and_then(|d| Endpoint::parse(d).ok()).is_some_and(|e| e.base().scheme() == "http")
        });
    Ok(ReaderConfig { data_dir, geo: crate::query::geo::for_parts(&geoip, emulated) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_read_a_config_whose_api_keys_and_tokens_are_not_in_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"
data_dir = "/var/lib/audit"
[[tenants]]
domain = "acme.tines.com"
api_key = "${READER_TEST_SURELY_UNSET_KEY}"
[[tenants]]
domain = "globex.tines.com"
api_key_env = "READER_TEST_SURELY_UNSET_KEY2"
[web]
token_env = "READER_TEST_SURELY_UNSET_TOKEN"
"#,
        )
        .unwrap();
        let c = load(&path).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/audit"));
        assert!(!c.geo.available());
        // A variable the reader needs is still required.
        std::fs::write(&path, "data_dir = \"${READER_TEST_SURELY_UNSET_DIR}/x\"\n").unwrap();
        let err = load(&path).err().unwrap().to_string();
        assert!(err.contains("data_dir") && err.contains("READER_TEST_SURELY_UNSET_DIR is not set"), "{err}");
    }

    #[test]
    fn emulator_tenants_get_the_emulator_country_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[[tenants]]\ndomain = \"http://127.0.0.1:9\"\napi_key_env = \"NOPE_NOT_SET\"\n")
            .unwrap();
        assert!(load(&path).unwrap().geo.available());
    }
}
