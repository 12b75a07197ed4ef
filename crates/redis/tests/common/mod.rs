//! Support shared by backstop-redis's test files: the runtime they run on, the 2 s
//! deadline of the tests about decisions, a window of a given shape, and a wait for
//! Redis to answer again. Support that other crates need too (the servers, the delaying
//! proxy) lives in backstop-testkit.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use backstop_core::Quota;
use backstop_redis::{RedisStore, RedisWindow, StoreOptions};

/// Two workers: enough for the concurrent callers the tests race, and the machine is
/// shared with other builds.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A generous deadline: these tests check decisions, not speed, on a loaded machine.
pub fn options() -> StoreOptions {
    StoreOptions {
        deadline: Duration::from_secs(2),
        ..StoreOptions::default()
    }
}

/// The window `name` on `store` admitting `limit` per `window`: a shape every test
/// writes as a valid one, so a bad one is the test's own bug and panics.
pub fn window(store: &RedisStore, name: &str, limit: u32, window: Duration) -> RedisWindow {
    RedisWindow::new(
        store,
        name,
        Quota::new(limit, window).expect("a valid shape"),
    )
    .expect("a valid window")
}

/// Asks `check` every 20 ms until it says yes (Redis answers again after a restart or a
/// slow spell); panics naming `what` when that takes longer than `limit`.
pub async fn within(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let polling = async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(limit, polling).await.is_err() {
        panic!("{what}: not within {limit:?}");
    }
}
