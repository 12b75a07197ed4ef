//! Store failures are logged once per outage: the first at `warn`, the rest at `debug`
//! (the counters hold them all), and the first answer after them at `info`.

mod common;

use backstop_testkit::redis as support;

use std::time::Duration;

use backstop_redis::{RedisStore, StoreOptions};
use backstop_testkit::capture::Captured;

#[test]
fn an_outage_is_one_warning_and_its_end_one_info_line() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    let out = Captured::default();
    // Global: the store's calls may run on the runtime's worker threads. The only test in
    // this binary, so nothing else writes here.
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(out.clone())
            .finish(),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let options = StoreOptions {
            deadline: Duration::from_secs(2),
            ..StoreOptions::default()
        };
        let store = RedisStore::connect(&url, options).await.unwrap();
        let window = common::window(
            &store,
            &support::unique("logging"),
            5,
            Duration::from_secs(60),
        );
        // A key of another type makes every call on it fail, as a broken store would.
        let mut conn = store.connection();
        let _: i64 = redis::cmd("RPUSH")
            .arg(window.key())
            .arg("x")
            .query_async(&mut conn)
            .await
            .unwrap();
        for _ in 0..3 {
            assert!(window.try_acquire_checked().await.is_err());
        }
        let _: i64 = redis::cmd("DEL")
            .arg(window.key())
            .query_async(&mut conn)
            .await
            .unwrap();
        window.try_acquire_checked().await.unwrap().unwrap();
        window.try_acquire_checked().await.unwrap().unwrap();
        assert_eq!(store.metrics().snapshot().store_errors, 3);
    });
    let text = out.text();
    let count = |level: &str, what: &str| {
        text.lines()
            .filter(|l| l.contains(level) && l.contains(what))
            .count()
    };
    assert_eq!(count("WARN", "redis store call failed"), 1, "{text}");
    assert_eq!(count("DEBUG", "redis store call failed"), 2, "{text}");
    assert_eq!(count("INFO", "redis store answering again"), 1, "{text}");
}
