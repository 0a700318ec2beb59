//! What the commands that only read the journal (search, report, `state show`
//! and `state export`) take from a config file: where the journal is (the data
//! directory or `[journal] url`) and, for the country lookup, the tenants'
//! addresses and the GeoIP databases. They need no API key or token, so they
//! never ask for one, and a variable the file uses only for those may be unset.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::JournalUrlArg;
use crate::config::{ConfigError, RawConfig};
use crate::journal::Location;
use crate::query::CountryLookup;
use crate::source::tines::endpoint::Endpoint;

/// A config file as a reader sees it.
pub struct ReaderConfig {
    pub data_dir: PathBuf,
    /// `[journal] url`, checked (and a variable it uses required) only when it is used:
    /// `--journal-url` replaces it.
    pub journal_url: Option<Result<Location, ConfigError>>,
    pub geo: Arc<dyn CountryLookup>,
    /// `[integrity] signing_key`.
    pub signing_key: Option<PathBuf>,
}

/// Where a reader's journal is: `--journal-url`, else the config's `[journal] url`, else SQLite
/// in `--data-dir`, the config's `data_dir` or the default.
pub fn location(
    flag: &JournalUrlArg,
    data_dir: Option<&Path>,
    config: Option<ReaderConfig>,
) -> Result<Location, ConfigError> {
    let (configured_url, configured_dir) = match config {
        Some(c) => (c.journal_url, Some(c.data_dir)),
        None => (None, None),
    };
    flag.choose(
        || configured_url.transpose(),
        || data_dir.map(Path::to_path_buf).or(configured_dir).unwrap_or_else(|| crate::config::DEFAULT_DATA_DIR.into()),
    )
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
    let journal_url = raw.journal.url.as_deref().map(|u| {
        check("journal.url", u)?;
        crate::config::journal_url(u, "journal.url")
    });
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
    let signing_key = raw.integrity.signing_key.clone();
    if let Some(k) = &signing_key {
        check("integrity.signing_key", &k.to_string_lossy())?;
    }
    Ok(ReaderConfig { data_dir, journal_url, geo: crate::query::geo::for_parts(&geoip, emulated), signing_key })
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

    fn flag(url: Option<&str>) -> JournalUrlArg {
        JournalUrlArg { url: url.map(crate::secret::Secret::url) }
    }

    #[test]
    fn the_journal_is_the_flag_else_the_configs_url_else_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let with_url = "data_dir = \"/cfg/dir\"\n[journal]\nurl = \"postgresql://cfg@cfg-db.example/audit\"\n";
        std::fs::write(&path, with_url).unwrap();
        let cfg = || Some(load(&path).unwrap());
        let flag_url = "postgresql://flag:unit-flag-pass-51@flag-db.example/audit";
        let at = |f: Option<&str>, d: Option<&str>, c: Option<ReaderConfig>| {
            location(&flag(f), d.map(Path::new), c).unwrap().to_string()
        };
        assert_eq!(at(Some(flag_url), Some("/flag/dir"), cfg()), "postgresql://flag:***@flag-db.example/audit");
        assert_eq!(at(None, Some("/flag/dir"), cfg()), "postgresql://cfg@cfg-db.example/audit");
        assert_eq!(at(None, None, cfg()), "postgresql://cfg@cfg-db.example/audit");
        std::fs::write(&path, "data_dir = \"/cfg/dir\"\n").unwrap();
        assert_eq!(at(None, Some("/flag/dir"), cfg()), "/flag/dir");
        assert_eq!(at(None, None, cfg()), "/cfg/dir");
        assert_eq!(at(None, None, None), crate::config::DEFAULT_DATA_DIR);
        assert_eq!(at(Some(flag_url), None, None), "postgresql://flag:***@flag-db.example/audit");
        // The flag is checked as the config's URL is, and named.
        let e = location(&flag(Some("mysql://flag:unit-flag-pass-51@h/d")), None, None).unwrap_err().to_string();
        assert!(e.contains("--journal-url") && !e.contains("unit-flag-pass-51"), "{e}");
    }

    #[test]
    fn a_variable_of_the_configs_journal_url_is_needed_only_when_the_url_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[journal]\nurl = \"postgresql://audit:${READER_TEST_SURELY_UNSET_PG}@db/audit\"\n")
            .unwrap();
        let e = location(&flag(None), None, Some(load(&path).unwrap())).unwrap_err().to_string();
        assert!(e.contains("journal.url") && e.contains("READER_TEST_SURELY_UNSET_PG is not set"), "{e}");
        let at = location(&flag(Some("postgresql://other@db/audit")), None, Some(load(&path).unwrap())).unwrap();
        assert_eq!(at.to_string(), "postgresql://other@db/audit");
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
