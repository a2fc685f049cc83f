//! Following `next_page_token` to the end: the one loop behind every list
//! verb that shows a whole collection (`vault list`, `policy list`,
//! `server list`, `secret list`, `backup list`, `recovery-point list`).
//! Verbs that page on request (`job list --page-token`) call once instead.

use std::future::Future;

use anyhow::bail;

/// Calls `fetch` with an empty page token, then with each
/// `next_page_token` it returns, until one is empty; returns every item of
/// every page, in order. `fetch` answers `(items, next_page_token)`.
pub async fn all_pages<T, F, Fut>(mut fetch: F) -> anyhow::Result<Vec<T>>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = anyhow::Result<(Vec<T>, String)>>,
{
    let mut items = Vec::new();
    let mut page_token = String::new();
    loop {
        let (page, next) = fetch(page_token.clone()).await?;
        items.extend(page);
        if next.is_empty() {
            return Ok(items);
        }
        if next == page_token {
            bail!(
                "the coordinator returned page token {next:?} for the page it was asked for with it; stopping instead of asking again forever"
            );
        }
        page_token = next;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    #[tokio::test]
    async fn every_page_is_fetched_in_order_until_the_token_is_empty() {
        let asked = RefCell::new(Vec::new());
        let items = all_pages(|token| {
            asked.borrow_mut().push(token.clone());
            async move {
                Ok(match token.as_str() {
                    "" => (vec![1, 2], "b".to_string()),
                    "b" => (vec![3], "c".to_string()),
                    _ => (vec![4], String::new()),
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(items, vec![1, 2, 3, 4]);
        assert_eq!(*asked.borrow(), ["", "b", "c"]);
    }

    #[tokio::test]
    async fn a_failed_page_fails_the_list() {
        let result: anyhow::Result<Vec<u8>> =
            all_pages(|_| async { Err(anyhow::anyhow!("unavailable")) }).await;
        assert_eq!(result.unwrap_err().to_string(), "unavailable");
    }

    #[tokio::test]
    async fn a_token_that_repeats_stops_the_loop() {
        let result: anyhow::Result<Vec<u8>> =
            all_pages(|_| async { Ok((vec![1], "same".to_string())) }).await;
        let error = result.unwrap_err().to_string();
        assert!(error.contains("\"same\""), "{error}");
    }
}
