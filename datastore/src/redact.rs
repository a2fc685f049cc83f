//! Error text without credentials. Store requests carry them in their URLs:
//! the presigned CreateBucket URL holds the AWS access key id, signature and
//! session token in its query; an Azure SAS token is sent as query pairs;
//! a URL may hold user info. reqwest's `Display` prints the request URL, and
//! object_store wraps reqwest errors, so every store error is shown through
//! this module: [`transport_error`] for our own reqwest calls, [`error_text`]
//! (which strips query, fragment and user info from each `http(s)://` URL in
//! the text) for everything else.

/// A reqwest error without its URL, with its causes (reqwest's own text is
/// only "error sending request"; the reason is in the causes).
pub fn transport_error(error: reqwest::Error) -> String {
    error_text(&error.without_url())
}

/// What a refused store request's body says: the `<Code>` and `<Message>`
/// of an S3 or Azure XML error (the rest may echo the request: S3's
/// SignatureDoesNotMatch holds the access key id and the canonical request
/// with the session token), else the first line, URLs redacted.
pub(crate) fn response_summary(body: &str) -> String {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let len = body[start..].find(&format!("</{name}>"))?;
        Some(body[start..start + len].lines().next().unwrap_or_default())
    };
    let text = match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => body.lines().next().unwrap_or_default().to_string(),
    };
    redact_urls(&text.chars().take(300).collect::<String>())
}

/// `error`'s text followed by each cause its text does not already hold
/// (object_store's errors print their source, reqwest's do not), with
/// [`redact_urls`] applied.
pub fn error_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    redact_urls(&text)
}

/// `text` with every `http://`/`https://` URL cut to scheme, host and path:
/// query, fragment and user info (where credentials travel) are dropped.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = find_url(rest) {
        out.push_str(&rest[..start]);
        let url_and_after = &rest[start..];
        let end = url_and_after
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ','))
            .unwrap_or(url_and_after.len());
        out.push_str(&redact_url(&url_and_after[..end]));
        rest = &url_and_after[end..];
    }
    out.push_str(rest);
    out
}

/// Byte offset of the next `http://` or `https://` (case-insensitive).
fn find_url(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    [lower.find("http://"), lower.find("https://")]
        .into_iter()
        .flatten()
        .min()
}

/// One URL without user info, query or fragment.
fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path_and_after) = rest.split_at(authority_end);
    let host = authority.rsplit('@').next().unwrap_or_default();
    let path = path_and_after.split(['?', '#']).next().unwrap_or_default();
    let mut redacted = format!("{scheme}://{host}{path}");
    if path_and_after.len() > path.len() || authority.contains('@') {
        redacted.push_str(" (query and user info not shown)");
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_fragments_and_user_info_are_cut_from_every_url() {
        let text = "Error after 0 retries, source:error sending request for url \
                    (https://acct.blob.core.windows.net/c/a%20b?sv=2022&sig=SECRETSIG#f) \
                    then http://user:pw@host:9000/x, and HTTP://h/?k=v";
        let redacted = redact_urls(text);
        for secret in ["SECRETSIG", "sv=", "pw@", "user:", "k=v", "#f"] {
            assert!(!redacted.contains(secret), "{secret} in {redacted}");
        }
        assert!(
            redacted.contains(
                "(https://acct.blob.core.windows.net/c/a%20b (query and user info not shown))"
            ),
            "{redacted}"
        );
        assert!(redacted.contains("then http://host:9000/x"), "{redacted}");
    }

    #[test]
    fn a_refused_request_is_summarised_by_its_code_and_message_only() {
        let s3 = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SignatureDoesNotMatch</Code>\
                  <Message>The request signature we calculated does not match</Message>\
                  <AWSAccessKeyId>AKIDLEAK</AWSAccessKeyId><CanonicalRequest>PUT /b/ \
                  X-Amz-Security-Token=TOKENLEAK</CanonicalRequest></Error>";
        assert_eq!(
            response_summary(s3),
            "SignatureDoesNotMatch: The request signature we calculated does not match"
        );
        let azure = "\u{feff}<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code>\
                     <Message>Server failed to authenticate the request.\nRequestId:1</Message>\
                     <AuthenticationErrorDetail>signature 'SIGLEAK'</AuthenticationErrorDetail></Error>";
        assert_eq!(
            response_summary(azure),
            "AuthenticationFailed: Server failed to authenticate the request."
        );
        assert_eq!(
            response_summary("bad gateway\nhttps://h/?sig=x"),
            "bad gateway"
        );
    }

    #[test]
    fn text_without_credentials_is_left_alone() {
        for text in [
            "plain error, no url",
            "cannot reach http://127.0.0.1:9000/bucket: connection refused",
            "",
        ] {
            assert_eq!(redact_urls(text), text);
        }
    }
}
