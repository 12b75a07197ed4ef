//! Several OS processes sharing one redis-server: this test binary re-executes itself
//! as replicas (`BACKSTOP_REDIS_ROLE` set), each with its own store and connection.

mod common;

use backstop_testkit::redis as support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use backstop_core::clock::ManualClock;
use backstop_core::jobs::JobBounds;
use backstop_core::{Decision, FrontDoor, Limits, RequestClass};
use backstop_redis::{RedisAdmission, RedisStore, StartError, StoreOptions, jobs};

const REPLICAS: usize = 4;
const LIMIT: u32 = 50;
const BOUNDS: JobBounds = JobBounds {
    max_queue: 12,
    critical_reserve: 0,
    max_jobs: 5,
};
/// Virtual time the replicas and the test agree on.
const T0: Duration = Duration::from_secs(1_700_000_000);
/// Virtual time: nothing here waits for a lease to end on real time.
const LEASE: Duration = Duration::from_secs(60);

/// Deadlines far beyond any round trip, also with four processes and a test run
/// starting at once on a loaded machine: a connect or a call that gave up would make a
/// replica report less than it holds (or exit), and what these tests check is sharing,
/// not speed.
fn options() -> StoreOptions {
    StoreOptions {
        connect_timeout: Duration::from_secs(60),
        deadline: Duration::from_secs(20), // a lease needs 3 deadlines
        ..StoreOptions::default()
    }
}

fn spawn_replica(role: &str, url: &str, name: &str) -> Child {
    Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "replica_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BACKSTOP_REDIS_ROLE", role)
        .env("BACKSTOP_REDIS_CHILD_URL", url)
        .env("BACKSTOP_REDIS_CHILD_NAME", name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("re-execute the test binary")
}

/// The line a replica prints once it holds what it took:
/// `held <admitted> <tickets taken> <tickets waiting> <permits>`.
fn read_report(child: &mut Child) -> Vec<u64> {
    let stdout = child.stdout.as_mut().expect("piped stdout");
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "replica exited before reporting"
        );
        // The harness may print "test replica_process ... " on the same line first.
        if let Some((_, rest)) = line.trim().split_once("held ") {
            return rest.split(' ').map(|n| n.parse().unwrap()).collect();
        }
    }
}

/// Not a test of its own: the body of a replica process. Without `BACKSTOP_REDIS_ROLE`
/// (an ordinary test run) it has nothing to do.
#[test]
fn replica_process() {
    let Ok(role) = std::env::var("BACKSTOP_REDIS_ROLE") else {
        return;
    };
    let url = std::env::var("BACKSTOP_REDIS_CHILD_URL").unwrap();
    let name = std::env::var("BACKSTOP_REDIS_CHILD_NAME").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if role == "claim" {
        rt.block_on(claim_in_a_child(&url, &name));
        return;
    }
    rt.block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let store = RedisStore::connect_with_clock(&url, options(), Arc::new(clock))
            .await
            .unwrap();
        let window = Arc::new(common::window(
            &store,
            &name,
            LIMIT,
            Duration::from_secs(60),
        ));
        let (queue, slots) = jobs::counters(&store, &name, BOUNDS, LEASE).unwrap();
        // A burst: 32 concurrent callers, 2 decisions each.
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let window = Arc::clone(&window);
            calls.spawn(async move {
                let mut admitted = 0u64;
                for _ in 0..2 {
                    admitted += u64::from(window.try_acquire().await.is_ok());
                }
                admitted
            });
        }
        let mut admitted = 0;
        while let Some(n) = calls.join_next().await {
            admitted += n.unwrap();
        }
        let mut tickets = Vec::new();
        for _ in 0..BOUNDS.max_queue {
            if let Ok(ticket) = queue.try_enter().await {
                tickets.push(ticket);
            }
        }
        let taken = tickets.len() as u64;
        let mut permits = Vec::new();
        let mut waiting = Vec::new();
        for ticket in tickets {
            match slots.try_start(ticket).await {
                Ok(permit) => permits.push(permit),
                Err(StartError::NoFreeSlot(ticket)) => waiting.push(ticket),
                Err(other) => panic!("{other}"),
            }
        }
        // Starting freed queue places: take them again, so that once every replica has
        // done this the queue is full.
        for _ in 0..BOUNDS.max_queue {
            if let Ok(ticket) = queue.try_enter().await {
                waiting.push(ticket);
            }
        }
        println!(
            "\nheld {admitted} {taken} {} {}",
            waiting.len(),
            permits.len()
        );
        std::io::stdout().flush().unwrap();
        if role == "burst" {
            // Hold everything until the test closes stdin, then release by dropping.
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        } else {
            // "die": wait to be SIGKILLed while holding.
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        drop((permits, waiting));
    });
}

fn door_limits() -> Limits {
    let mut limits = Limits::default();
    limits.queue.max = BOUNDS.max_queue;
    limits.jobs.max = BOUNDS.max_jobs;
    limits.resources.enabled = false;
    limits
}

/// The "claim" replica: claims the ticket token it is given, starts its job, reports
/// `held <fencing token of the claim> <fencing token of the permit>` and holds the
/// permit until stdin closes.
async fn claim_in_a_child(url: &str, name: &str) {
    let token = std::env::var("BACKSTOP_REDIS_CHILD_TOKEN").unwrap();
    let clock = ManualClock::new();
    clock.set(T0);
    let store = RedisStore::connect_with_clock(url, options(), Arc::new(clock))
        .await
        .unwrap();
    let door = RedisAdmission::with_lease(&store, name, door_limits(), LEASE).unwrap();
    let ticket = door.claim(&token).await.unwrap();
    let claimed = ticket.get().unwrap().fencing_token();
    let Ok(permit) = door.start_job(ticket).await else {
        panic!("the claimed ticket starts");
    };
    println!("\nheld {claimed} {}", permit.fencing_token());
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(permit);
}

/// A ticket detached in this process is claimed by another (a web process handing a
/// job to a worker): the worker's permit holds the slot, the queue place is gone, and
/// the fencing tokens rise from the take to the claim to the start.
#[test]
fn a_ticket_detached_here_is_claimed_and_started_by_another_process() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    let name = support::unique("claimed-elsewhere");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let store = RedisStore::connect_with_clock(&url, options(), Arc::new(clock))
            .await
            .unwrap();
        let door = RedisAdmission::with_lease(&store, &name, door_limits(), LEASE).unwrap();
        let Decision::Admitted(ticket) = door.admit(None, RequestClass::Normal).await else {
            panic!("admitted");
        };
        let taken = ticket.get().unwrap().fencing_token();
        let token = ticket.detach().await.unwrap();
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .args([
                "--exact",
                "replica_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("BACKSTOP_REDIS_ROLE", "claim")
            .env("BACKSTOP_REDIS_CHILD_URL", &url)
            .env("BACKSTOP_REDIS_CHILD_NAME", &name)
            .env("BACKSTOP_REDIS_CHILD_TOKEN", &token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("re-execute the test binary");
        let report = read_report(&mut child);
        assert!(
            taken < report[0] && report[0] < report[1],
            "{taken} {report:?}"
        );
        assert_eq!(door.queue().len().await.unwrap(), 0);
        assert_eq!(door.slots().active().await.unwrap(), 1, "the worker's job");
        assert!(door.claim(&token).await.is_err(), "claimed once");
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
    });
}

/// Four replicas burst at one window, one queue and one set of slots: exactly `limit`
/// admissions in total, and the queue and slot bounds hold globally.
#[test]
fn four_processes_share_one_limit_queue_and_slots() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    let name = support::unique("replicas");
    let mut children: Vec<Child> = (0..REPLICAS)
        .map(|_| spawn_replica("burst", &url, &name))
        .collect();
    let reports: Vec<Vec<u64>> = children.iter_mut().map(read_report).collect();
    let admitted: u64 = reports.iter().map(|r| r[0]).sum();
    let waiting: u64 = reports.iter().map(|r| r[2]).sum();
    let permits: u64 = reports.iter().map(|r| r[3]).sum();
    assert_eq!(admitted, u64::from(LIMIT), "{reports:?}");
    // Nobody released anything yet: the last replica to refill filled the queue.
    assert_eq!(waiting, u64::from(BOUNDS.max_queue), "{reports:?}");
    assert_eq!(permits, u64::from(BOUNDS.max_jobs), "{reports:?}");
    // And Redis agrees (at the replicas' virtual time, by which the leases are live).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let clock = ManualClock::new();
        clock.set(T0);
        let store = RedisStore::connect_with_clock(&url, options(), Arc::new(clock))
            .await
            .unwrap();
        let (queue, slots) = jobs::counters(&store, &name, BOUNDS, LEASE).unwrap();
        assert_eq!(queue.len().await.unwrap(), u64::from(BOUNDS.max_queue));
        assert_eq!(slots.active().await.unwrap(), u64::from(BOUNDS.max_jobs));
    });
    for child in &mut children {
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
    }
}

/// A replica SIGKILLed while holding tickets and permits: the capacity comes back
/// exactly when the leases end (injected time), never before, never later.
#[test]
fn a_killed_replica_leaks_capacity_only_for_the_lease_time() {
    let Some((url, _server)) = support::shared() else {
        return;
    };
    let name = support::unique("killed-replica");
    let mut child = spawn_replica("die", &url, &name);
    let report = read_report(&mut child);
    assert_eq!(
        (report[2], report[3]),
        (u64::from(BOUNDS.max_queue), u64::from(BOUNDS.max_jobs)),
        "it took the whole queue and every slot"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let clock = ManualClock::new();
        clock.set(T0 + LEASE - Duration::from_micros(1));
        let store = RedisStore::connect_with_clock(&url, options(), Arc::new(clock.clone()))
            .await
            .unwrap();
        let (queue, slots) = jobs::counters(&store, &name, BOUNDS, LEASE).unwrap();
        assert!(
            queue.try_enter().await.is_err(),
            "the dead replica's tickets still count"
        );
        assert!(slots.try_acquire().await.is_err(), "and its permits");
        clock.advance(Duration::from_micros(1));
        let ticket = queue
            .try_enter()
            .await
            .expect("queue places back at the lease time");
        let _permit = slots
            .try_start(ticket)
            .await
            .expect("slots back at the lease time");
        assert_eq!(queue.len().await.unwrap(), 0);
        assert_eq!(slots.active().await.unwrap(), 1);
    });
}
