//! Parsing of datastore URLs into a [`Location`]: which backend, which
//! bucket/container/directory, which root prefix, and the backend options
//! carried in the query string. Unknown schemes and keys are refused.

use std::path::PathBuf;

use url::Url;

use crate::DatastoreError;

/// Well-known account of the Azure storage emulator (Azurite).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Well-known, public key of the Azurite account.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Where a datastore lives, as parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory (absolute).
    Local { dir: PathBuf },
    /// An S3 (or S3-compatible) bucket.
    S3 {
        bucket: String,
        prefix: String,
        /// Custom endpoint (MinIO, moto); `None` = AWS.
        endpoint: Option<String>,
        region: Option<String>,
        allow_http: bool,
    },
    /// An Azure Blob container.
    Azure {
        container: String,
        prefix: String,
        /// Storage account; `None` = from AZURE_* environment (or Azurite's).
        account: Option<String>,
        /// Blob service endpoint including the account path for emulators.
        endpoint: Option<String>,
        emulator: bool,
    },
}

impl Location {
    /// Parses `file:///dir`, `/dir`, `s3://bucket/prefix?..` or `az://container/prefix?..`.
    pub fn parse(raw: &str) -> Result<Location, DatastoreError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(DatastoreError::invalid("the url is empty"));
        }
        if raw.starts_with('/') {
            return Ok(Location::Local {
                dir: PathBuf::from(raw),
            });
        }
        let url =
            Url::parse(raw).map_err(|e| DatastoreError::invalid(format!("malformed url: {e}")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DatastoreError::invalid(
                "credentials must not be embedded in the url; use AWS_* or AZURE_* environment variables",
            ));
        }
        if url.fragment().is_some() {
            return Err(DatastoreError::invalid(
                "a url fragment (#...) is not allowed",
            ));
        }
        match url.scheme() {
            "file" => parse_file(&url),
            "s3" => parse_s3(&url),
            "az" | "azure" => parse_azure(&url),
            other => Err(DatastoreError::invalid(format!("unknown scheme `{other}`"))),
        }
    }

    /// The root prefix inside the bucket/container (empty for local directories).
    pub fn prefix(&self) -> &str {
        match self {
            Location::Local { .. } => "",
            Location::S3 { prefix, .. } | Location::Azure { prefix, .. } => prefix,
        }
    }

    /// A canonical form of the URL that holds no secret (none can be in it).
    pub fn display_url(&self) -> String {
        match self {
            Location::Local { dir } => format!("file://{}", dir.display()),
            Location::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                allow_http,
            } => {
                let mut query = Vec::new();
                if let Some(e) = endpoint {
                    query.push(format!("endpoint={e}"));
                }
                if let Some(r) = region {
                    query.push(format!("region={r}"));
                }
                if *allow_http {
                    query.push("allow_http=true".to_string());
                }
                with_query(format!("s3://{bucket}{}", slash_prefix(prefix)), &query)
            }
            Location::Azure {
                container,
                prefix,
                account,
                endpoint,
                emulator,
            } => {
                let mut query = Vec::new();
                if let Some(a) = account {
                    query.push(format!("account={a}"));
                }
                if let Some(e) = endpoint {
                    query.push(format!("endpoint={e}"));
                }
                if *emulator {
                    query.push("emulator=true".to_string());
                }
                with_query(format!("az://{container}{}", slash_prefix(prefix)), &query)
            }
        }
    }
}

fn slash_prefix(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!("/{prefix}")
    }
}

fn with_query(base: String, query: &[String]) -> String {
    if query.is_empty() {
        base
    } else {
        format!("{base}?{}", query.join("&"))
    }
}

fn parse_file(url: &Url) -> Result<Location, DatastoreError> {
    if url
        .host_str()
        .is_some_and(|h| !h.is_empty() && h != "localhost")
    {
        return Err(DatastoreError::invalid(
            "file urls must not name a host: use file:///abs/dir",
        ));
    }
    if url.query().is_some() {
        return Err(DatastoreError::invalid(
            "file urls take no query parameters",
        ));
    }
    let dir = url
        .to_file_path()
        .map_err(|_| DatastoreError::invalid("file url does not hold an absolute path"))?;
    Ok(Location::Local { dir })
}

/// Bucket/container from the host, root prefix from the path (no empty segments).
fn bucket_and_prefix(url: &Url, what: &str) -> Result<(String, String), DatastoreError> {
    let bucket = url.host_str().unwrap_or_default().to_string();
    if bucket.is_empty() {
        return Err(DatastoreError::invalid(format!(
            "the {what} name is missing"
        )));
    }
    if url.port().is_some() {
        return Err(DatastoreError::invalid(format!(
            "a port is not allowed after the {what} name; pass endpoint=... instead"
        )));
    }
    let prefix = url
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    Ok((bucket, prefix))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, DatastoreError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(DatastoreError::invalid(format!(
            "`{key}` must be true or false, not `{value}`"
        ))),
    }
}

fn parse_endpoint(value: &str) -> Result<String, DatastoreError> {
    let endpoint = Url::parse(value)
        .map_err(|e| DatastoreError::invalid(format!("endpoint `{value}` is not a url: {e}")))?;
    if !matches!(endpoint.scheme(), "http" | "https") {
        return Err(DatastoreError::invalid(
            "endpoint must be an http:// or https:// url",
        ));
    }
    Ok(value.trim_end_matches('/').to_string())
}

fn parse_s3(url: &Url) -> Result<Location, DatastoreError> {
    let (bucket, prefix) = bucket_and_prefix(url, "bucket")?;
    let (mut endpoint, mut region, mut allow_http) = (None, None, false);
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "endpoint" => endpoint = Some(parse_endpoint(&value)?),
            "region" => region = Some(value.into_owned()),
            "allow_http" => allow_http = parse_bool("allow_http", &value)?,
            other => {
                return Err(DatastoreError::invalid(format!(
                    "unknown s3 query key `{other}` (known: endpoint, region, allow_http)"
                )));
            }
        }
    }
    Ok(Location::S3 {
        bucket,
        prefix,
        endpoint,
        region,
        allow_http,
    })
}

fn parse_azure(url: &Url) -> Result<Location, DatastoreError> {
    let (container, prefix) = bucket_and_prefix(url, "container")?;
    let (mut account, mut endpoint, mut emulator) = (None, None, false);
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "account" => account = Some(value.into_owned()),
            "endpoint" => endpoint = Some(parse_endpoint(&value)?),
            "emulator" => emulator = parse_bool("emulator", &value)?,
            other => {
                return Err(DatastoreError::invalid(format!(
                    "unknown az query key `{other}` (known: account, endpoint, emulator)"
                )));
            }
        }
    }
    Ok(Location::Azure {
        container,
        prefix,
        account,
        endpoint,
        emulator,
    })
}
