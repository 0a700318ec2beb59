//! The object-store sink as configured, validated once by
//! [`ObjectStoreConfig::build`] into a store client, a prefix and a batching
//! policy. Destinations are URLs: `s3://bucket/prefix`, `gs://bucket/prefix`,
//! `az://container/prefix` or `file:///absolute/dir`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ::object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, Checksum};
use ::object_store::azure::MicrosoftAzureBuilder;
use ::object_store::gcp::GoogleCloudStorageBuilder;
use ::object_store::local::LocalFileSystem;
use ::object_store::path::Path;
use ::object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use serde::Deserialize;

use super::sink::{CHECK_OBJECT as CHECK_PREFIX, DEFAULT_WRITE_CONCURRENCY, ObjectStoreSink};
use crate::format::{Encoder, Shape};
use crate::secret::Secret;
use crate::sinks::BatchPolicy;
use crate::timeutil::parse_duration;

/// Default roll size: this many bytes of raw records (before encoding and gzip).
pub const DEFAULT_ROLL_BYTES: u64 = 64 * 1024 * 1024;
/// Default roll size in events.
pub const DEFAULT_ROLL_EVENTS: usize = 100_000;
/// Default roll age: about one object a minute per partition at most, as Snowpipe prefers.
pub const DEFAULT_ROLL_AGE: Duration = Duration::from_secs(60);
/// A batch is held in memory while it is encoded and compressed; this bounds it.
pub const MAX_ROLL_BYTES: u64 = 1024 * 1024 * 1024;
pub const MAX_ROLL_EVENTS: usize = 1_000_000;
/// The most object writes in flight at once that `write_concurrency` may ask for.
pub const MAX_WRITE_CONCURRENCY: usize = 256;

/// A destination the layout is tuned for; see `docs/object-store.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// External stage + Snowpipe `AUTO_INGEST` (any shape; one object a minute).
    Snowflake,
    /// A SecOps Amazon S3 V2 / Cloud Storage V2 feed with log type TINES: raw records only.
    GoogleSecops,
}

/// `[[sinks]] type = "object_store"`. Unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectStoreConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// Shape of each line: `raw` (default), `ecs` or `ocsf`.
    #[serde(default)]
    pub format: Shape,
    /// Replace or drop user e-mail, name and IP with a keyed hash (GDPR).
    #[serde(default)]
    pub pseudonymize: Option<crate::format::PseudonymizeConfig>,
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or `file:///dir`.
    pub url: String,
    #[serde(default)]
    pub preset: Option<Preset>,
    /// Write an object once a batch holds this many bytes of raw records (default 64 MiB).
    #[serde(default)]
    pub roll_bytes: Option<u64>,
    /// ... or this many events (default 100,000) ...
    #[serde(default)]
    pub roll_events: Option<usize>,
    /// ... or once the oldest waiting event has waited this long (default `60s`).
    #[serde(default)]
    pub roll_age: Option<String>,
    /// Objects written at once: a batch spanning many hours (a backfill) is one object per
    /// tenant and hour (default 16, at most 256).
    #[serde(default)]
    pub write_concurrency: Option<usize>,
    /// S3 region (else `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint of an S3-compatible store (MinIO, Ceph, R2...), Azurite or a GCS emulator.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// S3 path-style requests (`endpoint/bucket/key`); default: on with `endpoint`, off for AWS.
    #[serde(default)]
    pub path_style: Option<bool>,
    /// Static S3 credentials; without them the AWS chain applies (env, web identity, ECS/EKS, IMDS).
    #[serde(default, deserialize_with = "secret")]
    pub access_key_id: Option<Secret>,
    #[serde(default, deserialize_with = "secret")]
    pub secret_access_key: Option<Secret>,
    #[serde(default, deserialize_with = "secret")]
    pub session_token: Option<Secret>,
    /// GCS service-account key file (else `GOOGLE_SERVICE_ACCOUNT`, ADC, or the metadata server).
    #[serde(default)]
    pub gcs_service_account_path: Option<PathBuf>,
    /// Azure storage account (else `AZURE_STORAGE_ACCOUNT_NAME`).
    #[serde(default)]
    pub azure_account: Option<String>,
    /// Azure shared key (else `AZURE_STORAGE_ACCOUNT_KEY`, a SAS, a client secret or managed identity).
    #[serde(default, deserialize_with = "secret")]
    pub azure_access_key: Option<Secret>,
    /// Timeout of one request to the store (default `120s`).
    #[serde(default)]
    pub request_timeout: Option<String>,
    /// Where the signed digests go, in the same bucket or container (for `file://`, an
    /// absolute directory); default: `<prefix>.digests`, beside the data prefix so that a
    /// feed reading the data never loads them. Required when the data has no prefix.
    #[serde(default)]
    pub digest_prefix: Option<String>,
}

fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::new))
}

/// Which kind of store a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    S3,
    Gcs,
    Azure,
    Local,
}

impl Backend {
    /// What the credentials need, said in the provider's own terms.
    pub(crate) fn permissions(self) -> &'static str {
        match self {
            Backend::S3 => "s3:PutObject, s3:GetObject and s3:ListBucket on the bucket and prefix",
            Backend::Gcs => {
                "storage.objects.create, storage.objects.get and storage.objects.list (roles/storage.objectUser)"
            }
            Backend::Azure => "the Storage Blob Data Contributor role (or a SAS with create, read and list)",
            Backend::Local => "write and read permission on the directory",
        }
    }

    /// How this kind of store is asked for a create-only write.
    pub(crate) fn create_only(self) -> &'static str {
        match self {
            Backend::S3 | Backend::Azure => "If-None-Match: *",
            Backend::Gcs => "x-goog-if-generation-match: 0",
            Backend::Local => "a no-clobber link",
        }
    }
}

/// A built destination: the store client, where under it the data goes, and how to name it in messages.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    pub url: String,
    pub backend: Backend,
    /// The directory of a `file://` destination (created on recovery).
    pub local_dir: Option<PathBuf>,
    /// Where the digests go: never inside `prefix`, except under a bucket-root prefix
    /// where the operator named it (`digest_prefix`). `None`: a bucket-root prefix without it.
    pub digests: Option<Path>,
}

impl ObjectStoreConfig {
    /// The consumer name: the configured one, else the URL.
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.url.trim_end_matches('/').to_string())
    }

    /// The same destination for alerts (`[[detect.outputs]] type = "sink"`):
    /// under `<prefix>.alerts`, beside the events' prefix rather than in it, so a
    /// stage or feed reading the events never takes an alert for an audit
    /// record, and alert objects (named by alert seqs) never meet event objects
    /// (named by event seqs). A bucket-root prefix has no beside: refused.
    pub fn for_alerts(&self) -> Result<ObjectStoreConfig, String> {
        let mut url = url::Url::parse(&self.url).map_err(|e| format!("url {:?} is not a URL ({e})", self.url))?;
        let prefix = url.path().trim_end_matches('/').to_string();
        if prefix.is_empty() {
            return Err(format!(
                "alerts go under a prefix of their own beside the events' prefix, and {:?} has none: give the sink a \
                 prefix (for example {}://{}/tines/audit; alerts then go to .../tines/audit.alerts)",
                self.url,
                url.scheme(),
                url.host_str().unwrap_or("bucket")
            ));
        }
        url.set_path(&format!("{prefix}.alerts"));
        // Alerts are not audit records and carry no digests; the events' digest_prefix is not theirs.
        Ok(ObjectStoreConfig { url: url.to_string(), digest_prefix: None, ..self.clone() })
    }

    /// Batching: roll an object at `roll_events`, `roll_bytes` (raw), or after `roll_age`.
    pub fn policy(&self) -> Result<BatchPolicy, String> {
        let bytes = self.roll_bytes.unwrap_or(DEFAULT_ROLL_BYTES);
        if !(1024..=MAX_ROLL_BYTES).contains(&bytes) {
            return Err(format!("roll_bytes must be between 1024 and {MAX_ROLL_BYTES} (1 GiB), got {bytes}"));
        }
        let events = self.roll_events.unwrap_or(DEFAULT_ROLL_EVENTS);
        if !(1..=MAX_ROLL_EVENTS).contains(&events) {
            return Err(format!("roll_events must be between 1 and {MAX_ROLL_EVENTS}, got {events}"));
        }
        let linger = match &self.roll_age {
            None => DEFAULT_ROLL_AGE,
            Some(s) => parse_duration(s)
                .filter(|d| *d <= Duration::from_secs(86_400))
                .ok_or_else(|| format!("roll_age {s:?} is not a duration up to 1 day such as 60s or 5m"))?,
        };
        Ok(BatchPolicy { max_events: events, max_bytes: bytes as usize, linger })
    }

    /// Validates everything and builds the sink, ready for `recover`. No network I/O.
    pub fn build(&self, encoder: Encoder) -> Result<ObjectStoreSink, String> {
        let at = format!("object_store sink {:?}", self.name());
        let err = |m: String| format!("{at}: {m}");
        if self.preset == Some(Preset::GoogleSecops) && (self.format != Shape::Raw || encoder.shape() != Shape::Raw) {
            return Err(err(
                "preset google_secops needs format = \"raw\": the SecOps TINES parser reads records as Tines sends them"
                    .into(),
            ));
        }
        if self.format != encoder.shape() {
            return Err(err(format!(
                "format {:?} but the encoder writes {:?}; build the encoder from this config's format",
                self.format,
                encoder.shape()
            )));
        }
        let policy = self.policy().map_err(err)?;
        let concurrency = self.write_concurrency.unwrap_or(DEFAULT_WRITE_CONCURRENCY);
        if !(1..=MAX_WRITE_CONCURRENCY).contains(&concurrency) {
            return Err(err(format!(
                "write_concurrency must be between 1 and {MAX_WRITE_CONCURRENCY}, got {concurrency}"
            )));
        }
        let dest = self.destination().map_err(err)?;
        if dest.digests.is_none() {
            return Err(err(format!(
                "url {:?} has no prefix, so a feed reading it reads the whole bucket and the signed digests have no \
                 place outside it: give the data a prefix (digests then go beside it, to <prefix>.digests), or set \
                 digest_prefix and keep the feed from reading it (for Snowpipe, PATTERN = '.*tenant=.*')",
                self.url
            )));
        }
        Ok(ObjectStoreSink::new(self.name(), dest, encoder, policy, concurrency))
    }

    fn request_timeout(&self) -> Result<Duration, String> {
        match &self.request_timeout {
            None => Ok(Duration::from_secs(120)),
            Some(s) => parse_duration(s)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("request_timeout {s:?} is not a duration such as 120s")),
        }
    }

    pub(crate) fn destination(&self) -> Result<Destination, String> {
        let url = url::Url::parse(&self.url).map_err(|e| {
            format!("url {:?} is not a URL ({e}): use s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///dir", self.url)
        })?;
        let backend = match url.scheme() {
            "s3" | "s3a" => Backend::S3,
            "gs" => Backend::Gcs,
            "az" | "azure" => Backend::Azure,
            "file" => Backend::Local,
            other => {
                return Err(format!(
                    "url scheme {other:?} is not supported: use s3://, gs://, az:// (container in the host part) or file://"
                ));
            }
        };
        self.check_fields_apply(backend)?;
        if backend == Backend::Local {
            return self.local(&url);
        }
        let bucket = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| {
            format!("url {:?} names no bucket or container: write it as {}://NAME/prefix", self.url, url.scheme())
        })?;
        let prefix = Path::from_url_path(url.path())
            .map_err(|e| format!("url {:?}: the prefix is not a valid object path: {e}", self.url))?;
        let options =
            ClientOptions::new().with_timeout(self.request_timeout()?).with_connect_timeout(Duration::from_secs(10));
        let display = format!("{}://{bucket}/{}", url.scheme(), prefix);
        let store: Arc<dyn ObjectStore> = match backend {
            Backend::S3 => Arc::new(self.s3(bucket, options)?),
            Backend::Gcs => {
                let mut options = options;
                let mut base_url = None;
                if let Some(e) = &self.endpoint {
                    let parsed = parse_endpoint(e)?;
                    if parsed.scheme() == "http" {
                        // The access token goes with every request: plain http only to this machine.
                        if !is_loopback(&parsed) {
                            return Err(format!(
                                "endpoint {e:?}: plain http is for a GCS emulator on this machine only \
                                 (127.0.0.1, [::1] or localhost), since the access token would travel unencrypted; \
                                 use https://"
                            ));
                        }
                        options = options.with_allow_http(true);
                    }
                    base_url = Some(e.trim_end_matches('/'));
                }
                let mut b = GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .with_client_options(options)
                    .with_retry(retry_config());
                if let Some(p) = &self.gcs_service_account_path {
                    b = b.with_service_account_path(p.display().to_string());
                }
                if let Some(e) = base_url {
                    b = b.with_base_url(e);
                }
                Arc::new(b.build().map_err(|e| format!("cannot set up Google Cloud Storage for {display}: {e}"))?)
            }
            Backend::Azure => {
                let mut b = MicrosoftAzureBuilder::from_env()
                    .with_container_name(bucket)
                    .with_client_options(options)
                    .with_retry(retry_config());
                if let Some(a) = &self.azure_account {
                    b = b.with_account(a);
                }
                if let Some(k) = &self.azure_access_key {
                    b = b.with_access_key(k.expose());
                }
                if let Some(e) = &self.endpoint {
                    let http = parse_endpoint(e)?.scheme() == "http";
                    b = b.with_endpoint(e.clone()).with_allow_http(http);
                }
                Arc::new(b.build().map_err(|e| {
                    format!(
                        "cannot set up Azure Blob Storage for {display}: {e} (the account comes from azure_account or AZURE_STORAGE_ACCOUNT_NAME)"
                    )
                })?)
            }
            Backend::Local => unreachable!("handled above"),
        };
        let digests = self.digest_location(&prefix, |p| {
            Path::parse(p.trim_matches('/')).map_err(|e| format!("digest_prefix {p:?} is not a valid object path: {e}"))
        })?;
        Ok(Destination { store, prefix, url: display, backend, local_dir: None, digests })
    }

    fn s3(&self, bucket: &str, options: ClientOptions) -> Result<::object_store::aws::AmazonS3, String> {
        // A SHA-256 of every upload (x-amz-checksum-sha256): S3 checks it on arrival, and a
        // bucket with S3 Object Lock refuses uploads without a checksum.
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_client_options(options)
            .with_retry(retry_config())
            .with_checksum_algorithm(Checksum::SHA256);
        if let Some(r) = &self.region {
            b = b.with_region(r);
        }
        if let Some(e) = &self.endpoint {
            let parsed = parse_endpoint(e)?;
            // Also as the S3-specific endpoint, which AWS_ENDPOINT_URL_S3 would otherwise override.
            let e = e.trim_end_matches('/');
            b = b
                .with_endpoint(e)
                .with_config(AmazonS3ConfigKey::S3Endpoint, e)
                .with_allow_http(parsed.scheme() == "http");
        }
        let path_style = self.path_style.unwrap_or(self.endpoint.is_some());
        b = b.with_virtual_hosted_style_request(!path_style);
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(key)) => {
                b = b.with_access_key_id(id.expose()).with_secret_access_key(key.expose());
                if let Some(t) = &self.session_token {
                    b = b.with_token(t.expose());
                }
            }
            (None, None) if self.session_token.is_some() => {
                return Err("session_token needs access_key_id and secret_access_key".into());
            }
            (None, None) => {}
            _ => return Err(
                "access_key_id and secret_access_key go together: set both, or neither to use the AWS credential chain"
                    .into(),
            ),
        }
        b.build().map_err(|e| format!("cannot set up S3 for s3://{bucket}: {e}"))
    }

    fn local(&self, url: &url::Url) -> Result<Destination, String> {
        let dir = url.to_file_path().ok().filter(|p| p.is_absolute()).ok_or_else(|| {
            format!(
                "url {:?} must be file:// with an absolute path, such as file:///var/lib/tines-audit/objects",
                self.url
            )
        })?;
        let text = dir.to_str().ok_or_else(|| format!("directory {} is not valid UTF-8", dir.display()))?;
        // The store is rooted at `/` so that building needs no directory yet; the directory is the prefix.
        let prefix = Path::parse(text.trim_start_matches('/'))
            .map_err(|e| format!("directory {} cannot be used as an object path: {e}", dir.display()))?;
        let store = LocalFileSystem::new().with_fsync(true);
        let digests = self.digest_location(&prefix, |p| {
            let d = std::path::Path::new(p);
            if !d.is_absolute() {
                return Err(format!("digest_prefix {p:?} must be an absolute directory for a file:// destination"));
            }
            Path::parse(p.trim_matches('/'))
                .map_err(|e| format!("digest_prefix {p:?} cannot be used as an object path: {e}"))
        })?;
        Ok(Destination {
            store: Arc::new(store),
            prefix,
            url: format!("file://{}", dir.display()),
            backend: Backend::Local,
            local_dir: Some(dir),
            digests,
        })
    }

    /// The digests' prefix: `digest_prefix` (parsed by `parse`), else `<prefix>.digests`; it may
    /// not hold the data nor lie inside it, where a feed would load digests as audit records.
    fn digest_location(
        &self,
        prefix: &Path,
        parse: impl Fn(&str) -> Result<Path, String>,
    ) -> Result<Option<Path>, String> {
        let Some(given) = &self.digest_prefix else {
            return Ok((!prefix.as_ref().is_empty()).then(|| Path::from(format!("{prefix}.digests"))));
        };
        let d = parse(given)?;
        if d.as_ref().is_empty() {
            return Err("digest_prefix may not be empty: name a prefix beside the data".into());
        }
        let within = |a: &Path, b: &Path| a == b || a.as_ref().starts_with(&format!("{b}/"));
        if prefix.as_ref().is_empty() {
            // The bucket root is the data prefix: only a name no data object takes.
            if d.as_ref().starts_with("tenant=") || d.as_ref().starts_with(CHECK_PREFIX) {
                return Err(format!("digest_prefix {given:?} collides with the data objects' names (tenant=...)"));
            }
        } else if within(&d, prefix) || within(prefix, &d) {
            return Err(format!(
                "digest_prefix {given:?} and the data prefix {prefix:?} contain one another: a feed reading the data \
                 would load the digests; put them beside it, such as {prefix}.digests"
            ));
        }
        Ok(Some(d))
    }

    /// Settings for one kind of store given to another are mistakes worth a message.
    fn check_fields_apply(&self, backend: Backend) -> Result<(), String> {
        let s3_only = [
            ("region", self.region.is_some()),
            ("path_style", self.path_style.is_some()),
            ("access_key_id", self.access_key_id.is_some()),
            ("secret_access_key", self.secret_access_key.is_some()),
            ("session_token", self.session_token.is_some()),
        ];
        let checks: [(&[(&str, bool)], Backend); 3] = [
            (&s3_only, Backend::S3),
            (&[("gcs_service_account_path", self.gcs_service_account_path.is_some())], Backend::Gcs),
            (
                &[
                    ("azure_account", self.azure_account.is_some()),
                    ("azure_access_key", self.azure_access_key.is_some()),
                ],
                Backend::Azure,
            ),
        ];
        for (fields, applies_to) in checks {
            if let Some((field, _)) = fields.iter().find(|(_, set)| *set).filter(|_| backend != applies_to) {
                return Err(format!("{field} applies to {applies_to:?} destinations only, not to {:?}", self.url));
            }
        }
        if backend == Backend::Local && (self.endpoint.is_some() || self.request_timeout.is_some()) {
            return Err("endpoint and request_timeout do not apply to a file:// destination".into());
        }
        Ok(())
    }
}

/// An `endpoint` setting: an https:// URL, or http:// for a local test server.
fn parse_endpoint(e: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(e).map_err(|err| format!("endpoint {e:?} is not a URL: {err}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(format!("endpoint {e:?} must start with https:// (or http:// for a local test server)"));
    }
    Ok(parsed)
}

/// Whether a URL names this machine: 127.0.0.0/8, ::1 or localhost.
fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The store client's own retries are short: the runner retries a failed batch later anyway.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(60),
    }
}
