//! The console's stylesheet and script, compiled into the binary with
//! `include_bytes!`: the console works offline and loads nothing from
//! elsewhere (the Content-Security-Policy of every page says so too).
//! Each is served at a path carrying a hash of its content, so browsers
//! may cache it for good and a new build is fetched at once.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

pub const STYLESHEET: Asset = Asset {
    name: "console.css",
    content_type: "text/css; charset=utf-8",
    bytes: include_bytes!("../assets/console.css"),
};

pub const SCRIPT: Asset = Asset {
    name: "console.js",
    content_type: "text/javascript; charset=utf-8",
    bytes: include_bytes!("../assets/console.js"),
};

const ALL: [&Asset; 2] = [&STYLESHEET, &SCRIPT];

/// `/assets/<name>?v=<hash>`, for the pages' `<link>` and `<script>`.
pub struct AssetUrls {
    pub stylesheet: String,
    pub script: String,
}

pub static URLS: LazyLock<AssetUrls> = LazyLock::new(|| AssetUrls {
    stylesheet: url(&STYLESHEET),
    script: url(&SCRIPT),
});

fn url(asset: &Asset) -> String {
    let hash = hex::encode(&Sha256::digest(asset.bytes)[..6]);
    format!("/assets/{}?v={hash}", asset.name)
}

/// `GET /assets/{name}`.
pub async fn serve(Path(name): Path<String>) -> Response {
    match ALL.iter().find(|asset| asset.name == name) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            asset.bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_change_with_the_content() {
        assert!(URLS.stylesheet.starts_with("/assets/console.css?v="));
        assert!(URLS.script.starts_with("/assets/console.js?v="));
        assert_ne!(URLS.stylesheet, URLS.script);
    }

    #[test]
    fn the_assets_reference_nothing_outside_the_console() {
        for asset in ALL {
            let text = std::str::from_utf8(asset.bytes).expect("utf-8");
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{}",
                asset.name
            );
        }
    }
}
