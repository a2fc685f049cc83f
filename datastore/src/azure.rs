//! Azure Blob "Create Container", which object_store does not offer: a
//! `PUT {endpoint}/{container}?restype=container` signed with SharedKey
//! (HMAC-SHA256 of the canonical string-to-sign with the account key).
//! 409 Conflict means the container exists already.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use object_store::ObjectStore;
use sha2::Sha256;

use crate::DatastoreError;
use crate::location::{AZURITE_ACCOUNT, AZURITE_KEY};
use crate::redact::{response_summary, transport_error};

/// REST API version sent with (and signed into) the request.
const API_VERSION: &str = "2021-08-06";

/// Account, endpoint and key resolved from the URL and AZURE_* environment.
#[derive(Clone)]
pub(crate) struct ContainerCreator {
    container: String,
    account: String,
    /// Blob service endpoint (for emulators it ends with `/<account>`).
    endpoint: String,
    /// Base64 account key; `None` when another credential (SAS, AAD) is used.
    key: Option<String>,
}

impl ContainerCreator {
    pub(crate) fn resolve(
        container: &str,
        account: Option<&str>,
        endpoint: Option<&str>,
        emulator: bool,
    ) -> Result<Self, DatastoreError> {
        let env_key = env_any(&["AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_ACCESS_KEY"]);
        let account = match account {
            Some(a) => a.to_string(),
            None if emulator => AZURITE_ACCOUNT.to_string(),
            None => env_any(&["AZURE_STORAGE_ACCOUNT_NAME"]).ok_or_else(|| {
                DatastoreError::invalid(
                    "az url needs account=... (or AZURE_STORAGE_ACCOUNT_NAME in the environment)",
                )
            })?,
        };
        let endpoint = match endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None if emulator => format!("http://127.0.0.1:10000/{account}"),
            None => format!("https://{account}.blob.core.windows.net"),
        };
        let key = match env_key {
            Some(k) => Some(k),
            None if emulator => Some(AZURITE_KEY.to_string()),
            None => None,
        };
        Ok(ContainerCreator {
            container: container.to_string(),
            account,
            endpoint,
            key,
        })
    }

    pub(crate) fn account(&self) -> &str {
        &self.account
    }

    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub(crate) fn access_key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Creates the container; without an account key only checks it is reachable.
    pub(crate) async fn ensure_container(
        &self,
        url: &str,
        store: &dyn ObjectStore,
    ) -> Result<(), DatastoreError> {
        let Some(key) = &self.key else {
            return crate::probe(store, url).await;
        };
        let create_err = |reason: String| DatastoreError::Create {
            url: url.to_string(),
            reason,
        };
        let request_url = url::Url::parse(&format!(
            "{}/{}?restype=container",
            self.endpoint, self.container
        ))
        .map_err(|e| create_err(format!("bad endpoint: {e}")))?;
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let signature = sign(
            &self.account,
            key,
            &string_to_sign(&self.account, &request_url, &date),
        )
        .map_err(create_err)?;
        let response = reqwest::Client::new()
            .put(request_url)
            .header("x-ms-date", &date)
            .header("x-ms-version", API_VERSION)
            .header("content-length", "0")
            .header("authorization", signature)
            .send()
            .await
            .map_err(|e| create_err(format!("request failed: {}", transport_error(e))))?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::CONFLICT {
            tracing::debug!(container = %self.container, %status, "azure container ensured");
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(create_err(format!(
            "create container returned {status}: {}",
            response_summary(&body)
        )))
    }
}

/// SharedKey string-to-sign for a body-less PUT with x-ms-date/x-ms-version.
fn string_to_sign(account: &str, url: &url::Url, date: &str) -> String {
    let mut query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.to_lowercase(), v.into_owned()))
        .collect();
    query.sort();
    let mut resource = format!("/{account}{}", url.path());
    for (k, v) in query {
        resource.push_str(&format!("\n{k}:{v}"));
    }
    // VERB, then 11 standard headers (all empty; Content-Length 0 is signed as empty),
    // then the canonicalized x-ms-* headers and the canonicalized resource.
    format!("PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{API_VERSION}\n{resource}")
}

fn sign(account: &str, key: &str, string_to_sign: &str) -> Result<String, String> {
    let key = BASE64
        .decode(key)
        .map_err(|_| "the azure account key is not valid base64".to_string())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|_| "invalid azure account key".to_string())?;
    mac.update(string_to_sign.as_bytes());
    Ok(format!(
        "SharedKey {account}:{}",
        BASE64.encode(mac.finalize().into_bytes())
    ))
}

pub(crate) fn env_any(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_to_sign_has_canonical_resource_and_query() {
        let url =
            url::Url::parse("http://127.0.0.1:10000/devstoreaccount1/backups?restype=container")
                .unwrap();
        let s = string_to_sign("devstoreaccount1", &url, "Mon, 01 Jan 2024 00:00:00 GMT");
        assert!(
            s.starts_with("PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:"),
            "{s}"
        );
        assert!(
            s.ends_with("\n/devstoreaccount1/devstoreaccount1/backups\nrestype:container"),
            "{s}"
        );
    }

    #[test]
    fn signature_is_shared_key_with_account() {
        let sig = sign("devstoreaccount1", AZURITE_KEY, "x").unwrap();
        assert!(sig.starts_with("SharedKey devstoreaccount1:"));
        assert!(sign("a", "not base64!!", "x").is_err());
    }
}
