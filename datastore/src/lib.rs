//! Datastores: object-store URLs (`file://`, `s3://`, `az://`) opened as
//! [`object_store`] stores, plus creating the directory, bucket or container
//! they point at.
//!
//! # Layout
//! - [`location`]: parses and validates datastore URLs.
//! - `azure`: Azure Blob "Create Container" (SharedKey-signed REST call).
//! - `s3`: S3 "CreateBucket" (signed by `rusty-s3`).
//! - [`redact`]: error text without the credentials store URLs carry.
//! - `error`: [`DatastoreError`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), pgvault_datastore::DatastoreError> {
//! let ds = pgvault_datastore::Datastore::open("file:///var/lib/pgvault/standard")?;
//! ds.ensure_exists().await?;
//! let path = ds.path("vault/instance/point/manifest.json");
//! # let _ = (ds.object_store(), path); Ok(()) }
//! ```

mod azure;
mod error;
pub mod location;
pub mod redact;
mod s3;

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

pub use error::{ACCEPTED_FORMS, DatastoreError};
pub use location::Location;

/// An opened datastore. Cheap to clone: the store is shared.
#[derive(Clone)]
pub struct Datastore {
    /// Parsed URL; holds no secret.
    location: Location,
    /// The object store rooted at the bucket/container (or `/` for local dirs).
    store: Arc<dyn ObjectStore>,
    /// Prefix applied by [`Datastore::path`]: the URL's root prefix, or the
    /// absolute directory for local datastores.
    root: String,
    /// What `ensure_exists` needs beyond the store itself.
    creator: Creator,
}

/// Resolved backend settings for creating the bucket or container.
#[derive(Clone)]
enum Creator {
    Local,
    S3(s3::BucketCreator),
    Azure(azure::ContainerCreator),
}

impl std::fmt::Debug for Datastore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datastore")
            .field("url", &self.redacted_url())
            .finish()
    }
}

impl Datastore {
    /// Opens a datastore URL. Nothing is contacted yet; see [`Datastore::ensure_exists`].
    pub fn open(url: &str) -> Result<Datastore, DatastoreError> {
        let location = Location::parse(url)?;
        let open_err = |source: object_store::Error| DatastoreError::Open {
            url: location.display_url(),
            reason: redact::error_text(&source),
        };
        let (store, root, creator): (Arc<dyn ObjectStore>, String, Creator) = match &location {
            Location::Local { dir } => {
                let root = dir.to_string_lossy().trim_matches('/').to_string();
                (Arc::new(LocalFileSystem::new()), root, Creator::Local)
            }
            Location::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                allow_http,
            } => {
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(endpoint) = endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_virtual_hosted_style_request(false);
                }
                if let Some(region) = region {
                    builder = builder.with_region(region);
                }
                if *allow_http {
                    builder = builder.with_allow_http(true);
                }
                let store = builder.build().map_err(open_err)?;
                let creator =
                    s3::BucketCreator::from_env(bucket, endpoint.as_deref(), region.as_deref());
                (Arc::new(store), prefix.clone(), Creator::S3(creator))
            }
            Location::Azure {
                container,
                prefix,
                account,
                endpoint,
                emulator,
            } => {
                let creator = azure::ContainerCreator::resolve(
                    container,
                    account.as_deref(),
                    endpoint.as_deref(),
                    *emulator,
                )?;
                let mut builder = MicrosoftAzureBuilder::from_env()
                    .with_container_name(container)
                    .with_account(creator.account())
                    .with_endpoint(creator.endpoint().to_string());
                if creator.endpoint().starts_with("http://") {
                    builder = builder.with_allow_http(true);
                }
                if let Some(key) = creator.access_key() {
                    builder = builder.with_access_key(key);
                }
                let store = builder.build().map_err(open_err)?;
                (Arc::new(store), prefix.clone(), Creator::Azure(creator))
            }
        };
        Ok(Datastore {
            location,
            store,
            root,
            creator,
        })
    }

    /// The underlying store; paths must come from [`Datastore::path`].
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The URL's root prefix joined with `relative` (`a/b/c`).
    pub fn path(&self, relative: &str) -> Path {
        let parts = self
            .root
            .split('/')
            .chain(relative.split('/'))
            .filter(|s| !s.is_empty());
        Path::from_iter(parts)
    }

    /// Creates the directory, bucket or container if missing. Idempotent.
    pub async fn ensure_exists(&self) -> Result<(), DatastoreError> {
        let url = self.redacted_url();
        match (&self.creator, &self.location) {
            (Creator::Local, Location::Local { dir }) => tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| DatastoreError::Create {
                    url,
                    reason: e.to_string(),
                }),
            (Creator::S3(creator), _) => creator.ensure_bucket(&url, self.store.as_ref()).await,
            (Creator::Azure(creator), _) => {
                creator.ensure_container(&url, self.store.as_ref()).await
            }
            (Creator::Local, _) => Err(DatastoreError::Create {
                url,
                reason: "inconsistent datastore".into(),
            }),
        }
    }

    /// Makes every object written so far durable. Cloud stores are durable
    /// once a write returns; a local directory's files sit in the page cache
    /// (object_store never fsyncs), so its whole filesystem is flushed with
    /// one `syncfs` — cheaper than an fsync per object when a backup wrote
    /// thousands. Call before writing what references the objects (a
    /// manifest) and before reporting them stored.
    pub async fn flush(&self) -> Result<(), DatastoreError> {
        let Location::Local { dir } = &self.location else {
            return Ok(());
        };
        let dir = dir.clone();
        let url = self.redacted_url();
        let flushed = tokio::task::spawn_blocking(move || sync_filesystem(&dir))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        flushed.map_err(|source| DatastoreError::Flush { url, source })
    }

    /// The URL in canonical form, safe to log (URLs never carry credentials).
    pub fn redacted_url(&self) -> String {
        self.location.display_url()
    }

    /// The parsed location.
    pub fn location(&self) -> &Location {
        &self.location
    }
}

/// `syncfs` on the filesystem holding `dir`.
fn sync_filesystem(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(dir)?;
    // SAFETY: syncfs takes a file descriptor, valid while `handle` lives.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Checks the bucket/container answers a listing (used when it cannot be created).
pub(crate) async fn probe(store: &dyn ObjectStore, url: &str) -> Result<(), DatastoreError> {
    store
        .list_with_delimiter(None)
        .await
        .map(|_| ())
        .map_err(|e| DatastoreError::Create {
            url: url.to_string(),
            reason: format!("datastore is not reachable: {}", redact::error_text(&e)),
        })
}

#[cfg(test)]
mod tests;
