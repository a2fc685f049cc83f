//! S3 "CreateBucket", which object_store does not offer: the request is
//! built and signed (AWS Signature Version 4, as a presigned URL) by
//! `rusty-s3` with the AWS_* environment credentials, and sent with
//! reqwest. An existing bucket we can list is success.

use std::time::Duration;

use object_store::ObjectStore;
use rusty_s3::actions::{CreateBucket, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use crate::DatastoreError;
use crate::azure::env_any;
use crate::redact::{response_summary, transport_error};

/// How long the signed CreateBucket URL stays valid: just the request.
const SIGNATURE_LIFETIME: Duration = Duration::from_secs(60);

/// Endpoint, region and credentials resolved at open time.
#[derive(Clone)]
pub(crate) struct BucketCreator {
    bucket: String,
    endpoint: String,
    region: String,
    /// `None` when no static credentials are in the environment.
    credentials: Option<Credentials>,
}

impl BucketCreator {
    pub(crate) fn from_env(bucket: &str, endpoint: Option<&str>, region: Option<&str>) -> Self {
        let region = region
            .map(str::to_string)
            .or_else(|| env_any(&["AWS_REGION", "AWS_DEFAULT_REGION"]))
            .unwrap_or_else(|| "us-east-1".to_string());
        let endpoint = endpoint
            .map(|e| e.trim_end_matches('/').to_string())
            .or_else(|| env_any(&["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]))
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let credentials = match (
            env_any(&["AWS_ACCESS_KEY_ID"]),
            env_any(&["AWS_SECRET_ACCESS_KEY"]),
        ) {
            (Some(key), Some(secret)) => Some(match env_any(&["AWS_SESSION_TOKEN"]) {
                Some(token) => Credentials::new_with_token(key, secret, token),
                None => Credentials::new(key, secret),
            }),
            _ => None,
        };
        BucketCreator {
            bucket: bucket.to_string(),
            endpoint,
            region,
            credentials,
        }
    }

    /// Creates the bucket if missing; an existing bucket must answer a listing.
    pub(crate) async fn ensure_bucket(
        &self,
        url: &str,
        store: &dyn ObjectStore,
    ) -> Result<(), DatastoreError> {
        let Some(credentials) = &self.credentials else {
            return crate::probe(store, url).await;
        };
        let create_err = |reason: String| DatastoreError::Create {
            url: url.to_string(),
            reason,
        };
        let (signed, body) = self.create_request(credentials).map_err(create_err)?;
        // S3 wants a Content-Length even for the empty body of us-east-1,
        // which reqwest leaves out.
        let response = reqwest::Client::new()
            .put(signed)
            .header(reqwest::header::CONTENT_LENGTH, body.len())
            .body(body)
            .send()
            .await
            .map_err(|e| create_err(format!("request failed: {}", transport_error(e))))?;
        let status = response.status();
        if status.is_success() {
            tracing::debug!(bucket = %self.bucket, "s3 bucket created");
            return Ok(());
        }
        if status == reqwest::StatusCode::CONFLICT {
            // BucketAlreadyOwnedByYou, or BucketAlreadyExists: fine if we can use it.
            return crate::probe(store, url).await;
        }
        let text = response.text().await.unwrap_or_default();
        Err(create_err(format!(
            "create bucket returned {status}: {}",
            response_summary(&text)
        )))
    }

    /// The signed CreateBucket URL (path style, as object_store addresses
    /// the bucket) and its body: the region's location constraint, which S3
    /// wants for every region but us-east-1.
    fn create_request(&self, credentials: &Credentials) -> Result<(url::Url, String), String> {
        let endpoint = url::Url::parse(&self.endpoint)
            .map_err(|e| format!("bad endpoint {}: {e}", self.endpoint))?;
        let bucket = Bucket::new(
            endpoint,
            UrlStyle::Path,
            self.bucket.clone(),
            self.region.clone(),
        )
        .map_err(|e| format!("bad bucket or endpoint: {e}"))?;
        let signed = CreateBucket::new(&bucket, credentials).sign(SIGNATURE_LIFETIME);
        let body = if self.region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            )
        };
        Ok((signed, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creator(endpoint: &str, region: &str) -> BucketCreator {
        BucketCreator {
            bucket: "backups".into(),
            endpoint: endpoint.into(),
            region: region.into(),
            credentials: None,
        }
    }

    #[test]
    fn create_bucket_is_a_signed_path_style_put_url() {
        let credentials = Credentials::new("AKID", "not-a-real-secret");
        let (signed, body) = creator("http://127.0.0.1:5000", "us-east-1")
            .create_request(&credentials)
            .unwrap();
        assert_eq!(signed.path(), "/backups/");
        let query: Vec<(String, String)> = signed.query_pairs().into_owned().collect();
        let get = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{name} missing from {signed}"))
        };
        assert_eq!(get("X-Amz-Algorithm"), "AWS4-HMAC-SHA256");
        assert!(
            get("X-Amz-Credential").starts_with("AKID/")
                && get("X-Amz-Credential").ends_with("/us-east-1/s3/aws4_request"),
            "{signed}"
        );
        assert_eq!(get("X-Amz-Signature").len(), 64);
        assert!(!signed.as_str().contains("not-a-real-secret"));
        assert!(body.is_empty());
    }

    #[test]
    fn other_regions_send_their_location_constraint() {
        let credentials = Credentials::new("AKID", "secret");
        let (signed, body) = creator("https://s3.eu-west-1.amazonaws.com", "eu-west-1")
            .create_request(&credentials)
            .unwrap();
        assert!(
            signed
                .as_str()
                .starts_with("https://s3.eu-west-1.amazonaws.com/backups/?")
        );
        assert!(
            body.contains("<LocationConstraint>eu-west-1</LocationConstraint>"),
            "{body}"
        );
    }

    /// A loopback port nothing listens on.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.local_addr().expect("local addr").port()
    }

    #[tokio::test]
    async fn a_failed_create_bucket_request_shows_no_part_of_the_presigned_url() {
        let endpoint = format!("http://127.0.0.1:{}", closed_port());
        let mut creator = creator(&endpoint, "us-east-1");
        creator.credentials = Some(Credentials::new_with_token(
            "AKIDLEAKCHECK",
            "secret-leak-check",
            "session-token-leak-check",
        ));
        let store = object_store::memory::InMemory::new();
        let error = creator
            .ensure_bucket("s3://backups", &store)
            .await
            .expect_err("nothing listens on the port")
            .to_string();
        assert!(
            error.starts_with("cannot create datastore s3://backups: request failed"),
            "{error}"
        );
        assert!(
            error.to_lowercase().contains("connect"),
            "the cause is kept: {error}"
        );
        for secret in [
            "AKIDLEAKCHECK",
            "leak-check",
            "X-Amz",
            "?",
            "Signature",
            "Credential",
        ] {
            assert!(!error.contains(secret), "{secret} in {error}");
        }
    }

    #[test]
    fn a_bad_endpoint_is_named() {
        let credentials = Credentials::new("AKID", "secret");
        let error = creator("not a url", "us-east-1")
            .create_request(&credentials)
            .unwrap_err();
        assert!(error.starts_with("bad endpoint not a url"), "{error}");
    }
}
