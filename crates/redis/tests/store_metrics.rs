//! The store's `backstop_store_*` families in a prometheus-client registry, against a
//! real redis-server: decisions and round trips counted, `backstop_store_failing` set
//! while Redis is gone and cleared when it answers again, and a round trip that Redis
//! held up (`CLIENT PAUSE`) measured as long as it was.

mod common;
use common::runtime;

use backstop_testkit::redis as support;

use std::time::Duration;

use backstop_redis::{RedisStore, StoreOptions};
use prometheus_client::registry::Registry;

fn scrape(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

/// The value of the sample written exactly as `series`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn the_store_families_follow_its_calls_and_its_outages() {
    let Some(mut server) = support::RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let options = StoreOptions {
            deadline: Duration::from_millis(200),
            ..StoreOptions::default()
        };
        let store = RedisStore::connect(&server.url(), options).await.unwrap();
        let mut registry = Registry::default();
        store.register_metrics(&mut registry);
        let window = common::window(&store, "metrics", 1000, Duration::from_secs(60));
        for _ in 0..10 {
            window.try_acquire().await.unwrap();
        }
        let text = scrape(&registry);
        assert_eq!(sample(&text, "backstop_store_decisions_total"), 10.0);
        assert_eq!(sample(&text, "backstop_store_failing"), 0.0);
        assert_eq!(sample(&text, "backstop_store_errors_total"), 0.0);
        assert!(
            sample(&text, "backstop_store_round_trip_seconds_count") >= 10.0,
            "{text}"
        );
        assert!(
            text.contains("# TYPE backstop_store_round_trip_seconds histogram\n"),
            "{text}"
        );
        assert!(text.contains("backstop_store_round_trip_seconds_bucket{le=\"+Inf\"}"));

        server.kill();
        assert!(window.try_acquire().await.is_err());
        let text = scrape(&registry);
        assert_eq!(sample(&text, "backstop_store_failing"), 1.0);
        assert!(
            sample(&text, "backstop_store_errors_total")
                + sample(&text, "backstop_store_timeouts_total")
                >= 1.0,
            "{text}"
        );

        server.restart();
        common::within(
            Duration::from_secs(10),
            "answers again after the restart",
            async || window.try_acquire().await.is_ok(),
        )
        .await;
        assert_eq!(sample(&scrape(&registry), "backstop_store_failing"), 0.0);
    });
}

#[test]
fn a_round_trip_redis_held_up_is_measured_as_long_as_it_was() {
    let Some(server) = support::RedisServer::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let options = StoreOptions {
            deadline: Duration::from_secs(5),
            ..StoreOptions::default()
        };
        let store = RedisStore::connect(&server.url(), options).await.unwrap();
        let window = common::window(&store, "paused", 1000, Duration::from_secs(60));
        window.try_acquire().await.unwrap();
        let before = store.metrics().round_trips();
        let slow_before: u64 = before
            .buckets
            .iter()
            .filter(|(upper, _)| *upper > 0.25)
            .map(|(_, n)| n)
            .sum();
        // Another client pauses every client for 400 ms: the next call waits it out.
        let client = redis::Client::open(server.url()).unwrap();
        let mut pauser = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(400)
            .query_async(&mut pauser)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        window.try_acquire().await.unwrap();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        let after = store.metrics().round_trips();
        assert_eq!(after.count(), before.count() + 1);
        let slow_after: u64 = after
            .buckets
            .iter()
            .filter(|(upper, _)| *upper > 0.25)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(slow_after, slow_before + 1, "{after:?}");
        assert!(after.sum_seconds - before.sum_seconds >= 0.3, "{after:?}");
    });
}
