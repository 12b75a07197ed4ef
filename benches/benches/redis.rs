//! backstop-redis against its peers on one redis-server, in one run: decisions per second
//! at 1, 16 and 64 concurrent callers in one process (one multiplexed connection each),
//! latency at 1 caller against a bare PING, and memory per key at limit 30.
//!
//! Peers, written here: the sorted-set "sliding log" (ZREMRANGEBYSCORE + ZCARD + ZADD per
//! request, exact, a member per admission) and GCRA in the manner of go-redis/redis_rate
//! (one theoretical arrival time per key; not "N per window").
//!
//! Run: `cargo bench -p backstop-benches --bench redis` (uses BACKSTOP_REDIS_URL, or starts
//! its own redis-server on a free loopback port; without one it says so and measures
//! nothing). Not criterion: each figure is the median
//! of 5 rounds of a fixed duration, printed as a table.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backstop_redis::StoreConnection;
use backstop_redis::{RedisStore, RedisWindow, StoreOptions};
use redis::Script;

const LIMIT: u32 = 30;
const WINDOW: Duration = Duration::from_secs(1);
const ROUND: Duration = Duration::from_millis(700);
const ROUNDS: usize = 5;

const SLIDING_LOG: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
return 1
";

// GCRA as go-redis/redis_rate does it: the key holds the theoretical arrival time.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local emission = period / limit
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + emission
if new_tat - now > period then return 0 end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(period / 1000))
return 1
";

#[derive(Clone)]
enum Contender {
    Backstop(Arc<RedisWindow>),
    Peer(StoreConnection, Arc<Script>, String),
}

impl Contender {
    async fn decide(&mut self, n: u64) -> bool {
        match self {
            Contender::Backstop(window) => window.try_acquire().await.is_ok(),
            Contender::Peer(conn, script, key) => {
                let admitted: i64 = script
                    .key(&*key)
                    .arg(LIMIT)
                    .arg(WINDOW.as_micros() as u64)
                    .arg(n)
                    .invoke_async(conn)
                    .await
                    .expect("peer script");
                admitted == 1
            }
        }
    }
}

/// Decisions per second of `callers` tasks deciding on one key, median of the rounds.
async fn throughput(contender: &Contender, callers: usize) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..ROUNDS {
        rates.push(throughput_for(contender, callers, ROUND).await);
    }
    median(rates)
}

/// Decisions per second of `callers` tasks deciding on one key for `round`.
async fn throughput_for(contender: &Contender, callers: usize, round: Duration) -> f64 {
    {
        let count = Arc::new(AtomicU64::new(0));
        let stop = Instant::now() + round;
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..callers {
            let mut contender = contender.clone();
            let count = Arc::clone(&count);
            tasks.spawn(async move {
                while Instant::now() < stop {
                    let n = count.fetch_add(1, Ordering::Relaxed);
                    std::hint::black_box(contender.decide(n).await);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn memory_usage(conn: &mut StoreConnection, key: &str) -> u64 {
    redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(conn)
        .await
        .expect("MEMORY USAGE")
}

fn main() {
    // Killed when `_server` drops at the end; `None` (said why) without a redis-server.
    let Some((url, _server)) = backstop_testkit::redis::shared() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let options = StoreOptions {
            deadline: Duration::from_secs(1),
            ..StoreOptions::default()
        };
        let store = RedisStore::connect(&url, options).await.expect("connect");
        let mut conn = store.connection();
        let version: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await.unwrap();
        let version = version
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("?")
            .trim()
            .to_owned();
        println!("redis-server {version} at {url}; limit {LIMIT} per {WINDOW:?}, one key");
        let backstop = Contender::Backstop(Arc::new(
            RedisWindow::new(&store, "bench", LIMIT, WINDOW).unwrap(),
        ));
        let log = Contender::Peer(
            store.connection(),
            Arc::new(Script::new(SLIDING_LOG)),
            "bench:log".into(),
        );
        let gcra = Contender::Peer(store.connection(), Arc::new(Script::new(GCRA)), "bench:gcra".into());

        // For a profiler: only `contender` at `callers`, for `seconds`, then stop.
        // `latency`: the latency figures alone.
        let only = std::env::var("BACKSTOP_REDIS_BENCH_ONLY").ok();
        if let Some(spec) = only.as_deref().filter(|spec| *spec != "latency") {
            let mut parts = spec.split(',');
            let which = parts.next().unwrap_or("backstop");
            let callers: usize = parts.next().and_then(|c| c.parse().ok()).unwrap_or(64);
            let seconds: u64 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(10);
            let contender = match which {
                "log" => &log,
                "gcra" => &gcra,
                _ => &backstop,
            };
            let rate = throughput_for(contender, callers, Duration::from_secs(seconds)).await;
            println!("{which} at {callers} callers for {seconds} s: {rate:.0} decisions/s");
            return;
        }

        println!("\ndecisions/s (median of {ROUNDS} rounds of {ROUND:?})");
        println!("{:>8} {:>12} {:>12} {:>12} {:>10} {:>10}", "callers", "backstop", "sliding log", "gcra", "vs log", "vs gcra");
        let callers_list: &[usize] = if only.is_some() { &[] } else { &[1, 16, 64] };
        for &callers in callers_list {
            let b = throughput(&backstop, callers).await;
            let l = throughput(&log, callers).await;
            let g = throughput(&gcra, callers).await;
            println!("{callers:>8} {b:>12.0} {l:>12.0} {g:>12.0} {:>9.2}x {:>9.2}x", b / l, b / g);
        }

        // Latency: the five calls taken in turn, 4000 times, so that a change in the
        // machine's load falls on all of them alike; the median of each. Besides PING,
        // the backstop decision and the sliding log: where a decision's time goes, the
        // floor of any script (EVALSHA of `return 1`) and the window script called bare
        // through redis-rs (no store, no deadline, no coalescing).
        let floor_script = Script::new("return 1");
        let window_script = Script::new(include_str!("../../crates/redis/src/lua/window.lua"));
        let key = match &backstop {
            Contender::Backstop(window) => window.key().to_owned(),
            Contender::Peer(..) => unreachable!(),
        };
        let (mut b, mut l) = (backstop.clone(), log.clone());
        let mut samples: [Vec<f64>; 5] = Default::default();
        for _ in 0..4000 {
            let started = Instant::now();
            let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
            samples[0].push(started.elapsed().as_secs_f64() * 1e6);
            let started = Instant::now();
            std::hint::black_box(b.decide(0).await);
            samples[1].push(started.elapsed().as_secs_f64() * 1e6);
            let started = Instant::now();
            std::hint::black_box(l.decide(0).await);
            samples[2].push(started.elapsed().as_secs_f64() * 1e6);
            let started = Instant::now();
            let _: i64 = floor_script.invoke_async(&mut conn).await.unwrap();
            samples[3].push(started.elapsed().as_secs_f64() * 1e6);
            let started = Instant::now();
            let _: u64 = window_script
                .key(&*key)
                .arg(LIMIT)
                .arg(WINDOW.as_micros() as u64)
                .arg("")
                .arg(1)
                .invoke_async(&mut conn)
                .await
                .unwrap();
            samples[4].push(started.elapsed().as_secs_f64() * 1e6);
        }
        let [ping, decision, log_latency, floor, bare] = samples.map(median);
        println!("\nlatency at 1 caller (median µs, interleaved): PING {ping:.1}, backstop {decision:.1} ({:.2}x PING), sliding log {log_latency:.1} ({:.2}x PING)", decision / ping, log_latency / ping);
        println!("  decomposed: EVALSHA of `return 1` {floor:.1} ({:.2}x PING), the window script bare {bare:.1} ({:.2}x PING)", floor / ping, bare / ping);

        // Memory per key holding 30 admissions.
        let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
        let memory_window = RedisWindow::new(&store, "memory", LIMIT, Duration::from_secs(600)).unwrap();
        for _ in 0..LIMIT {
            memory_window.try_acquire().await.unwrap();
        }
        let mut log_conn = store.connection();
        let script = Script::new(SLIDING_LOG);
        for n in 0..LIMIT {
            let _: i64 = script
                .key("memory:log")
                .arg(LIMIT)
                .arg(600_000_000u64)
                .arg(n)
                .invoke_async(&mut log_conn)
                .await
                .unwrap();
        }
        let ours = memory_usage(&mut conn, memory_window.key()).await;
        let theirs = memory_usage(&mut conn, "memory:log").await;
        println!(
            "\nmemory per key at limit {LIMIT} (MEMORY USAGE): backstop {ours} B, sliding log {theirs} B ({:.2}x)",
            ours as f64 / theirs as f64
        );
    });
}
