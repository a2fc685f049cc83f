//! S3 "CreateBucket", which object_store does not offer: a path-style
//! `PUT {endpoint}/{bucket}` signed with AWS Signature Version 4 using the
//! AWS_* environment credentials. An existing bucket we can list is success.

use hmac::{Hmac, Mac};
use object_store::ObjectStore;
use sha2::{Digest, Sha256};

use crate::DatastoreError;
use crate::azure::{env_any, first_line};

/// Endpoint, region and credentials resolved at open time.
#[derive(Clone)]
pub(crate) struct BucketCreator {
    bucket: String,
    endpoint: String,
    region: String,
    /// `None` when no static credentials are in the environment.
    credentials: Option<Credentials>,
}

#[derive(Clone)]
struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
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
            (Some(access_key_id), Some(secret_access_key)) => Some(Credentials {
                access_key_id,
                secret_access_key,
                session_token: env_any(&["AWS_SESSION_TOKEN"]),
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
        let request_url = url::Url::parse(&format!("{}/{}", self.endpoint, self.bucket))
            .map_err(|e| create_err(format!("bad endpoint: {e}")))?;
        let body = if self.region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            )
        };
        let now = chrono::Utc::now();
        let signed =
            sign_v4(&request_url, &self.region, credentials, &body, &now).map_err(create_err)?;
        let mut request = reqwest::Client::new().put(request_url).body(body);
        for (name, value) in signed {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| create_err(format!("request failed: {e}")))?;
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
            first_line(&text)
        )))
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &str) -> Result<Vec<u8>, String> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key).map_err(|_| "invalid signing key".to_string())?;
    mac.update(data.as_bytes());
    Ok(mac.finalize().into_bytes().to_vec())
}

/// SigV4 headers (host excluded: reqwest derives the same value from the URL).
fn sign_v4(
    url: &url::Url,
    region: &str,
    credentials: &Credentials,
    body: &str,
    now: &chrono::DateTime<chrono::Utc>,
) -> Result<Vec<(&'static str, String)>, String> {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = now.format("%Y%m%d").to_string();
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let payload_hash = sha256_hex(body.as_bytes());
    let mut headers = vec![
        ("host", host),
        ("x-amz-content-sha256", payload_hash.clone()),
        ("x-amz-date", amz_date.clone()),
    ];
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token", token.clone()));
    }
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .join(";");
    let path = if url.path().is_empty() {
        "/"
    } else {
        url.path()
    };
    let canonical_request =
        format!("PUT\n{path}\n\n{canonical_headers}\n{signed_headers}\n{payload_hash}");
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mut key = hmac(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        &date,
    )?;
    for part in [region, "s3", "aws4_request"] {
        key = hmac(&key, part)?;
    }
    let signature = hex::encode(hmac(&key, &string_to_sign)?);
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    );
    headers.retain(|(k, _)| *k != "host");
    headers.push(("authorization", authorization));
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigv4_matches_aws_documented_signing_key_derivation() {
        // Signing-key example from the AWS SigV4 documentation.
        let mut key = hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215").unwrap();
        for part in ["us-east-1", "iam", "aws4_request"] {
            key = hmac(&key, part).unwrap();
        }
        assert_eq!(
            hex::encode(key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn sigv4_headers_include_authorization_and_date() {
        let creds = Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        };
        let url = url::Url::parse("http://127.0.0.1:5000/bucket").unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
            .unwrap()
            .to_utc();
        let headers = sign_v4(&url, "us-east-1", &creds, "", &now).unwrap();
        let auth = &headers
            .iter()
            .find(|(k, _)| *k == "authorization")
            .unwrap()
            .1;
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/20240102/us-east-1/s3/aws4_request"),
            "{auth}"
        );
        assert!(auth.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date"));
        assert!(!headers.iter().any(|(k, _)| *k == "host"));
    }
}
