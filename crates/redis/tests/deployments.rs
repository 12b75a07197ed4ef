//! The deployments: a 3-primary Redis Cluster, a primary followed through Sentinel
//! across a failover, TLS with a CA made here, an endpoint that moves to another node,
//! and the ACL the README lists. Every part is a real server started by the test (or
//! the cluster CI shares); under `CI=true` a part that cannot start fails the test.

mod common;
use common::runtime;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backstop_core::Quota;
use backstop_core::clock::ManualClock;
use backstop_core::jobs::JobBounds;
use backstop_core::{Decision, FrontDoor, Limits, RequestClass};
use backstop_redis::{
    ConnectError, RedisAdmission, RedisKeyedWindow, RedisStore, StoreOptions, TlsConfig, jobs,
};
use backstop_testkit::redis::{self as support, RedisSentinels, RedisServer, TlsRedis};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const T0: Duration = Duration::from_secs(1_700_000_000);

fn options() -> StoreOptions {
    StoreOptions {
        deadline: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(5),
        ..StoreOptions::default()
    }
}

/// Keys per node of a cluster (`DBSIZE` on each).
fn keys_per_node(nodes: &[u16]) -> Vec<u64> {
    nodes
        .iter()
        .map(|port| {
            let out = std::process::Command::new("redis-cli")
                .args(["-p", &port.to_string(), "dbsize"])
                .output()
                .expect("redis-cli");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(0)
        })
        .collect()
}

#[test]
fn a_cluster_admits_exactly_across_its_nodes() {
    // A private cluster: the test counts keys per node.
    let Some(cluster) = support::RedisCluster::start(3) else {
        return;
    };
    runtime().block_on(async {
        let store = RedisStore::connect(&cluster.url(), options())
            .await
            .unwrap();
        assert!(store.connection().is_cluster());

        // A global window hit by 64 callers at once: exactly the limit.
        let window = Arc::new(common::window(
            &store,
            "global",
            100,
            Duration::from_secs(60),
        ));
        let admitted = Arc::new(AtomicU64::new(0));
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let (window, admitted) = (Arc::clone(&window), Arc::clone(&admitted));
            calls.spawn(async move {
                for _ in 0..4 {
                    if window.try_acquire().await.is_ok() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        while calls.join_next().await.is_some() {}
        assert_eq!(admitted.load(Ordering::Relaxed), 100);

        // 60 clients of a keyed window, 3 each allowed, 5 asked: exactly 180, their
        // keys spread over every node.
        let keyed = Arc::new(
            RedisKeyedWindow::new(
                &store,
                "keyed",
                Quota::new(3, Duration::from_secs(60)).unwrap(),
            )
            .unwrap(),
        );
        let mut total = 0;
        for client in 0..60 {
            for _ in 0..5 {
                total += u32::from(keyed.try_acquire(&format!("c{client}")).await.is_ok());
            }
        }
        assert_eq!(total, 180);
        let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
        let spread = keys_per_node(&ports);
        assert!(
            spread.iter().all(|&n| n > 0),
            "keys on every node: {spread:?}"
        );

        // The queue and slots of one gate, on its node: bounds hold.
        let bounds = JobBounds {
            max_queue: 3,
            critical_reserve: 0,
            max_jobs: 2,
        };
        let (queue, slots) =
            jobs::counters(&store, "gate", bounds, Duration::from_secs(5)).unwrap();
        let mut tickets = Vec::new();
        for _ in 0..3 {
            tickets.push(queue.try_enter().await.unwrap());
        }
        assert!(queue.try_enter().await.is_err(), "queue of 3 full");
        let mut permits = Vec::new();
        let mut waiting = Vec::new();
        for ticket in tickets {
            match slots.try_start(ticket).await {
                Ok(permit) => permits.push(permit),
                Err(backstop_redis::StartError::NoFreeSlot(ticket)) => waiting.push(ticket),
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!((permits.len(), waiting.len()), (2, 1));
        assert_eq!(slots.active().await.unwrap(), 2);
        assert!(permits[1].fencing_token() > permits[0].fencing_token());
    });
}

#[test]
fn a_front_door_on_the_cluster_shares_one_limit_between_two_stores() {
    let Some((url, _cluster)) = support::shared_cluster() else {
        return;
    };
    runtime().block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let name = support::unique("cluster-door");
        let mut limits = Limits::default();
        limits.rate.limit = 7;
        limits.resources.enabled = false;
        let a = RedisStore::connect_with_clock(&url, options(), Arc::new(clock.clone()))
            .await
            .unwrap();
        let b = RedisStore::connect_with_clock(&url, options(), Arc::new(clock.clone()))
            .await
            .unwrap();
        let doors = [
            RedisAdmission::new(&a, &name, limits.clone())
                .unwrap()
                .with_per_key(Quota::new(5, Duration::from_secs(60)).unwrap())
                .unwrap(),
            RedisAdmission::new(&b, &name, limits)
                .unwrap()
                .with_per_key(Quota::new(5, Duration::from_secs(60)).unwrap())
                .unwrap(),
        ];
        let mut admitted = 0;
        for i in 0..20 {
            clock.advance(Duration::from_millis(10));
            let client = format!("client-{}", i % 4);
            if let Decision::Admitted(ticket) = doors[i % 2]
                .admit(Some(&client), RequestClass::Normal)
                .await
            {
                admitted += 1;
                drop(ticket);
            }
        }
        assert_eq!(admitted, 7, "one limit across both stores, on the cluster");
    });
}

#[test]
fn a_cluster_node_given_as_a_plain_url_is_refused_saying_what_to_use() {
    let Some((url, _cluster)) = support::shared_cluster() else {
        return;
    };
    runtime().block_on(async {
        let first = url
            .trim_start_matches("redis+cluster://")
            .split(',')
            .next()
            .unwrap()
            .to_owned();
        let err = RedisStore::connect(&format!("redis://{first}"), options())
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::ClusterNode { .. }), "{err:?}");
        assert!(err.to_string().contains("redis+cluster://"), "{err}");
    });
}

/// A failover in the middle of a burst: the store follows the new primary (through
/// Sentinel), and what was admitted in the window stays within the README's bound for a
/// failover with asynchronous replication, 2 × limit.
#[test]
fn a_sentinel_failover_mid_burst_is_followed_within_the_stated_bound() {
    let Some(set) = RedisSentinels::start() else {
        return;
    };
    runtime().block_on(async {
        let store = RedisStore::connect(&set.url(), options()).await.unwrap();
        let limit = 3000;
        let window = Arc::new(common::window(
            &store,
            "failover",
            limit,
            Duration::from_secs(120),
        ));
        let admitted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut callers = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (window, admitted, stop) = (
                Arc::clone(&window),
                Arc::clone(&admitted),
                Arc::clone(&stop),
            );
            callers.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if window.try_acquire().await.is_ok() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
        }
        // Fail over once a few hundred are in.
        while admitted.load(Ordering::Relaxed) < 300 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let before = admitted.load(Ordering::Relaxed);
        let old_primary = tokio::task::block_in_place(|| set.primary_port());
        let failed_over = Instant::now();
        tokio::task::block_in_place(|| set.fail_over());
        assert_ne!(
            tokio::task::block_in_place(|| set.primary_port()),
            old_primary
        );
        // The store follows: admissions go on against the new primary.
        let resumed_from = admitted.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(20);
        while admitted.load(Ordering::Relaxed) < resumed_from + 200 {
            assert!(Instant::now() < deadline, "no admission after the failover");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let followed_in = failed_over.elapsed();
        // Run on until the window is full, then stop.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = admitted.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(300)).await;
            if admitted.load(Ordering::Relaxed) == seen || Instant::now() > deadline {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        while callers.join_next().await.is_some() {}
        let total = admitted.load(Ordering::Relaxed);
        let reconnects = store.metrics().snapshot().reconnects;
        eprintln!(
            "failover after {before} admissions: followed in {followed_in:?}, {total} admitted \
             in the window of {limit} ({} over), {reconnects} reconnects",
            total.saturating_sub(u64::from(limit))
        );
        assert!(reconnects >= 1);
        assert!(
            total >= u64::from(limit),
            "the window filled on the new primary: {total}"
        );
        assert!(total <= 2 * u64::from(limit), "within 2 × limit: {total}");
    });
}

#[test]
fn tls_with_the_right_ca_connects_and_a_wrong_ca_is_a_typed_error() {
    let Some(tls) = TlsRedis::start(&[]) else {
        return;
    };
    runtime().block_on(async {
        let right = TlsConfig::from_files(Some(&tls.file("ca.crt")), None, None).unwrap();
        let store = RedisStore::connect_with_tls(&tls.url(), options(), &right)
            .await
            .unwrap();
        let window = common::window(&store, "tls", 2, Duration::from_secs(60));
        window.try_acquire().await.unwrap();
        window.try_acquire().await.unwrap();
        assert!(window.try_acquire().await.is_err());

        let wrong = TlsConfig::from_files(Some(&tls.file("other-ca.crt")), None, None).unwrap();
        let err = RedisStore::connect_with_tls(&tls.url(), options(), &wrong)
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Tls { .. }), "{err:?}");
        // The system's roots do not vouch for a test CA either.
        let err = RedisStore::connect(&tls.url(), options())
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Tls { .. }), "{err:?}");
    });
}

#[test]
fn tls_with_a_client_certificate_where_the_server_requires_one() {
    let Some(tls) = TlsRedis::start(&["--tls-auth-clients", "yes"]) else {
        return;
    };
    runtime().block_on(async {
        let with_cert = TlsConfig::from_files(
            Some(&tls.file("ca.crt")),
            Some(&tls.file("client.crt")),
            Some(&tls.file("client.key")),
        )
        .unwrap();
        let store = RedisStore::connect_with_tls(&tls.url(), options(), &with_cert)
            .await
            .unwrap();
        let window = common::window(&store, "mtls", 1, Duration::from_secs(60));
        window.try_acquire().await.unwrap();

        let without = TlsConfig::from_files(Some(&tls.file("ca.crt")), None, None).unwrap();
        assert!(
            RedisStore::connect_with_tls(&tls.url(), options(), &without)
                .await
                .is_err()
        );
        let half = TlsConfig::from_files(
            Some(&tls.file("ca.crt")),
            Some(&tls.file("client.crt")),
            None,
        )
        .unwrap();
        let err = RedisStore::connect_with_tls(&tls.url(), options(), &half)
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Tls { .. }), "{err:?}");
    });
}

/// A loopback proxy whose upstream can be switched: connections made after a switch go
/// to the new port (a DNS name or a load balancer moving to another node).
async fn switching_proxy(upstream: Arc<AtomicU64>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let to = upstream.load(Ordering::Relaxed) as u16;
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
                let _ = client.shutdown().await;
            });
        }
    });
    port
}

/// The endpoint's node is demoted (READONLY) and the name moves to the promoted one: the
/// store drops its connection, connects again and decides on the new primary, without a
/// restart.
#[test]
fn a_demoted_node_behind_one_endpoint_is_left_for_the_new_primary() {
    let (Some(first), Some(second)) = (RedisServer::start(&[]), RedisServer::start(&[])) else {
        return;
    };
    runtime().block_on(async {
        let upstream = Arc::new(AtomicU64::new(u64::from(first.port)));
        let port = switching_proxy(Arc::clone(&upstream)).await;
        let store = RedisStore::connect(&format!("redis://127.0.0.1:{port}"), options())
            .await
            .unwrap();
        let window = common::window(&store, "moved", 1000, Duration::from_secs(60));
        window.try_acquire().await.unwrap();
        // Fail over by hand: the first node becomes a replica of the second, and the
        // endpoint now leads to the second.
        redis_cli(
            first.port,
            &["replicaof", "127.0.0.1", &second.port.to_string()],
        );
        upstream.store(u64::from(second.port), Ordering::Relaxed);
        let started = Instant::now();
        let mut answers = Vec::new();
        loop {
            let answer = window.try_acquire_checked().await;
            let ok = matches!(answer, Ok(Ok(())));
            answers.push(answer);
            if ok {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{answers:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(store.metrics().snapshot().reconnects >= 1);
        let on_second = redis_cli(second.port, &["exists", window.key()]);
        assert_eq!(
            on_second.trim(),
            "1",
            "the decision was made on the new primary"
        );
    });
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A user with exactly the ACL the README lists connects and runs every stage.
#[test]
fn the_acl_the_readme_lists_is_enough() {
    let Some(server) = RedisServer::start(&[]) else {
        return;
    };
    let readme = include_str!("../README.md");
    let rule = readme
        .lines()
        .find_map(|line| line.trim().strip_prefix("ACL SETUSER backstop "))
        .expect("the README lists an `ACL SETUSER backstop …` line");
    let mut args = vec!["acl", "setuser", "backstop"];
    args.extend(rule.split_whitespace());
    let answer = redis_cli(server.port, &args);
    assert!(answer.contains("OK"), "{answer}");
    runtime().block_on(async {
        let url = format!("redis://backstop:secret@127.0.0.1:{}", server.port);
        let store = RedisStore::connect(&url, options()).await.unwrap();
        let mut limits = Limits::default();
        limits.resources.enabled = false;
        let door = RedisAdmission::new(&store, "acl", limits)
            .unwrap()
            .with_per_key(Quota::new(5, Duration::from_secs(60)).unwrap())
            .unwrap()
            .with_max_keys(10)
            .unwrap();
        let Decision::Admitted(ticket) = door.admit(Some("alice"), RequestClass::Normal).await
        else {
            panic!("admitted");
        };
        let token = ticket.detach().await.unwrap();
        let ticket = door.claim(&token).await.unwrap();
        let Ok(permit) = door.start_job(ticket).await else {
            panic!("started");
        };
        assert_eq!(door.slots().active().await.unwrap(), 1);
        assert_eq!(door.queue().len().await.unwrap(), 0);
        let seen: HashSet<u64> = [permit.fencing_token()].into_iter().collect();
        assert_eq!(seen.len(), 1);
    });
}
