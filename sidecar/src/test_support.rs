//! Helpers shared by the crate's unit tests.

use std::time::Duration;

use std::time::Instant;

/// Waits (up to 10 s, polling every 20 ms) until `check` holds.
pub async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
