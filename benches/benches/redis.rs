//! backstop-redis against its peers, in one run: decisions per second at 1, 16 and 64
//! concurrent callers in one process (one multiplexed connection each) on one
//! redis-server and on a 3-primary Redis Cluster; latency at 1 caller against a bare PING;
//! the script's own time inside Redis at limit 30 and 65 536 (and with two limits
//! alternating on one key); memory per key; and what a limited client's retries cost with
//! the refusal cache, without it, and through the door (`RedisAdmission` with a per-client
//! stage).
//!
//! Peers, written here: the sorted-set "sliding log" (ZREMRANGEBYSCORE + ZCARD + ZADD per
//! request, exact, a member per admission) and GCRA in the manner of go-redis/redis_rate
//! (one theoretical arrival time per key; not "N per window").
//!
//! Run: `cargo bench -p backstop-benches --bench redis`. It starts its own redis-server
//! and a 3-primary cluster on free loopback ports (or uses `BACKSTOP_REDIS_URL` and
//! `BACKSTOP_REDIS_CLUSTER_URL`); without redis-server it says so and measures nothing,
//! without redis-cli it skips the cluster. Not criterion: each throughput figure is the
//! median of 5 rounds of a fixed duration, the contenders taking their rounds in turn, and
//! every figure is printed as a table.
//!
//! `BACKSTOP_REDIS_BENCH_SECTIONS=single,cluster,latency,server,memory,cache` (any of them)
//! runs only those sections. `BACKSTOP_REDIS_BENCH_ONLY=backstop,64,10` (or `log`, `gcra`)
//! runs one contender at 64 callers for 10 s and nothing else, for a profiler.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backstop_core::{Decision, FrontDoor, Limits, Quota, RateScope, Refusal, RequestClass};
use backstop_redis::StoreConnection;
use backstop_redis::{RedisAdmission, RedisKeyedWindow, RedisStore, RedisWindow, StoreOptions};
use redis::{Script, Value};

const LIMIT: u32 = 30;
const WINDOW: Duration = Duration::from_secs(1);
const ROUND: Duration = Duration::from_millis(700);
const ROUNDS: usize = 5;
/// The largest limit of the time-per-decision rows.
const BIG_LIMIT: u32 = 65_536;
/// A window no row outlives: its refusals hold for the whole run.
const LONG_WINDOW: Duration = Duration::from_secs(600);
/// A window so short that a lone caller is always admitted.
const SHORT_WINDOW: Duration = Duration::from_millis(1);
/// Calls per series in the rows measured inside Redis, in blocks of `BLOCK`.
const SERVER_CALLS: usize = 1000;
const BLOCK: usize = 50;
/// Retries per round in the refusal cache rows.
const RETRIES: usize = 1000;

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

/// The window script as the store sends it (crates/redis/src/scripts.rs: the layout, the
/// common decisions, the ring's helpers, then the decision).
const WINDOW_SCRIPT: &str = concat!(
    include_str!("../../crates/redis/src/lua/layout.lua"),
    "\n",
    include_str!("../../crates/redis/src/lua/common.lua"),
    "\n",
    include_str!("../../crates/redis/src/lua/ring.lua"),
    "\n",
    include_str!("../../crates/redis/src/lua/window.lua"),
    "\n"
);

#[derive(Clone)]
enum Contender {
    /// Every decision asks Redis (`try_acquire_checked`: no refusal cache), so that the
    /// figure is the shared window's own, as the peers' are.
    Backstop(Arc<RedisWindow>),
    Peer(StoreConnection, Arc<Script>, String),
}

impl Contender {
    async fn decide(&mut self, n: u64) -> bool {
        match self {
            Contender::Backstop(window) => {
                matches!(window.try_acquire_checked().await, Ok(Ok(())))
            }
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

/// backstop and its two peers on one store, every key under the same hash tag (so on one
/// node of a cluster, as a door's keys are).
struct Contenders {
    backstop: Contender,
    log: Contender,
    gcra: Contender,
}

impl Contenders {
    fn new(store: &RedisStore, name: &str) -> Self {
        let window =
            RedisWindow::new(store, name, Quota::new(LIMIT, WINDOW).unwrap()).expect("a window");
        let tag = format!("{{backstop:w:{name}}}");
        Contenders {
            backstop: Contender::Backstop(Arc::new(window)),
            log: Contender::Peer(
                store.connection(),
                Arc::new(Script::new(SLIDING_LOG)),
                format!("{tag}:log"),
            ),
            gcra: Contender::Peer(
                store.connection(),
                Arc::new(Script::new(GCRA)),
                format!("{tag}:gcra"),
            ),
        }
    }

    /// Decisions per second of each at `callers`: the median of [`ROUNDS`] rounds, the
    /// three taking their rounds in turn so that a change in the machine's load falls on
    /// all of them alike.
    async fn throughput(&self, callers: usize) -> [f64; 3] {
        let mut rates: [Vec<f64>; 3] = Default::default();
        for _ in 0..ROUNDS {
            for (rates, contender) in rates
                .iter_mut()
                .zip([&self.backstop, &self.log, &self.gcra])
            {
                rates.push(throughput_for(contender, callers, ROUND).await);
            }
        }
        rates.map(median)
    }

    async fn print_throughput(&self, title: &str, callers_list: &[usize]) {
        println!("\n{title}: decisions/s (median of {ROUNDS} rounds of {ROUND:?}, taken in turn)");
        println!(
            "| callers | backstop | sliding log | gcra | ÷ log | ÷ gcra |\n|---:|---:|---:|---:|---:|---:|"
        );
        for &callers in callers_list {
            let [b, l, g] = self.throughput(callers).await;
            println!(
                "| {callers} | {b:.0} | {l:.0} | {g:.0} | {:.2}× | {:.2}× |",
                b / l,
                b / g
            );
        }
        println!("load after: {}", load());
    }
}

/// Decisions per second of `callers` tasks deciding on one key for `round`.
async fn throughput_for(contender: &Contender, callers: usize, round: Duration) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + round;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let mut contender = contender.clone();
        let count = Arc::clone(&count);
        tasks.spawn(async move {
            while Instant::now() < stop {
                // Relaxed: a counter read once every task has ended.
                let n = count.fetch_add(1, Ordering::Relaxed);
                std::hint::black_box(contender.decide(n).await);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    // Relaxed: every task has been joined.
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The 1-, 5- and 15-minute load averages, as `uptime` shows them.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".into(),
        |text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

fn store_options() -> StoreOptions {
    StoreOptions {
        deadline: Duration::from_secs(1),
        ..StoreOptions::default()
    }
}

/// The latency at 1 caller: PING, a backstop decision, the sliding log, EVALSHA of
/// `return 1` (the floor of any script) and the window script called bare through
/// redis-rs (no store, no deadline, no batching) taken in turn, 4000 times, so that a
/// change in the machine's load falls on all of them alike; the median of each.
async fn latency(contenders: &Contenders, conn: &mut StoreConnection) {
    let floor_script = Script::new("return 1");
    let window_script = Script::new(WINDOW_SCRIPT);
    let (mut b, mut l) = (contenders.backstop.clone(), contenders.log.clone());
    let key = match &b {
        Contender::Backstop(window) => window.key().to_owned(),
        Contender::Peer(..) => unreachable!("the first contender is backstop"),
    };
    let mut samples: [Vec<f64>; 5] = Default::default();
    for _ in 0..4000 {
        let started = Instant::now();
        let _: String = redis::cmd("PING").query_async(conn).await.unwrap();
        samples[0].push(started.elapsed().as_secs_f64() * 1e6);
        let started = Instant::now();
        std::hint::black_box(b.decide(0).await);
        samples[1].push(started.elapsed().as_secs_f64() * 1e6);
        let started = Instant::now();
        std::hint::black_box(l.decide(0).await);
        samples[2].push(started.elapsed().as_secs_f64() * 1e6);
        let started = Instant::now();
        let _: i64 = floor_script.invoke_async(conn).await.unwrap();
        samples[3].push(started.elapsed().as_secs_f64() * 1e6);
        let started = Instant::now();
        let _: i64 = window_script
            .key(&*key)
            .arg(LIMIT)
            .arg(WINDOW.as_micros() as u64)
            .arg("")
            .arg(1)
            .invoke_async(conn)
            .await
            .unwrap();
        samples[4].push(started.elapsed().as_secs_f64() * 1e6);
    }
    let [ping, decision, log, floor, bare] = samples.map(median);
    println!(
        "\nlatency at 1 caller (median µs of 4000, interleaved; load {}): PING {ping:.1}, \
         backstop {decision:.1} ({:.2}× PING), sliding log {log:.1} ({:.2}× PING)",
        load(),
        decision / ping,
        log / ping
    );
    println!(
        "  decomposed: EVALSHA of `return 1` {floor:.1} ({:.2}× PING), the window script \
         bare {bare:.1} ({:.2}× PING)",
        floor / ping,
        bare / ping
    );
}

/// Admits `admissions` at `limit` per `window` on `key` at once, through the window
/// script in batches (what the store's batching sends, in larger batches).
async fn fill(
    conn: &mut StoreConnection,
    key: &str,
    limit: u32,
    window: Duration,
    admissions: u32,
) {
    let script = Script::new(WINDOW_SCRIPT);
    let mut left = admissions;
    while left > 0 {
        let batch = left.min(4096);
        let _: Value = script
            .key(key)
            .arg(limit)
            .arg(window.as_micros() as u64)
            .arg("")
            .arg(batch)
            .invoke_async(conn)
            .await
            .expect("filling a window");
        left -= batch;
    }
}

/// The windows of the rows measured inside Redis: a name, its limit, its window, how
/// many admissions it holds before the row starts. Two rows share each `alt-` name.
const SERIES: [(&str, &str, u32, Duration, u32); 8] = [
    ("refusal, limit 30", "cost-30", LIMIT, LONG_WINDOW, LIMIT),
    (
        "refusal, limit 65 536",
        "cost-65536",
        BIG_LIMIT,
        LONG_WINDOW,
        BIG_LIMIT,
    ),
    (
        "refusal, limits alternating: at 30",
        "cost-alt",
        LIMIT,
        LONG_WINDOW,
        0,
    ),
    (
        "refusal, limits alternating: at 65 536",
        "cost-alt",
        BIG_LIMIT,
        LONG_WINDOW,
        BIG_LIMIT,
    ),
    (
        "admission, limit 30",
        "admit-30",
        LIMIT,
        SHORT_WINDOW,
        LIMIT,
    ),
    (
        "admission, limit 65 536",
        "admit-65536",
        BIG_LIMIT,
        SHORT_WINDOW,
        BIG_LIMIT,
    ),
    (
        "admission, limits alternating: at 30",
        "admit-alt",
        LIMIT,
        SHORT_WINDOW,
        0,
    ),
    (
        "admission, limits alternating: at 65 536",
        "admit-alt",
        BIG_LIMIT,
        SHORT_WINDOW,
        BIG_LIMIT,
    ),
];

/// The script's own time inside Redis per decision (`INFO commandstats`: the time Redis
/// spent executing the EVALSHAs, without I/O), in blocks of [`BLOCK`] calls of one series,
/// the series taking their blocks in turn until each made [`SERVER_CALLS`]. Every window
/// is full before (a ring of 65 536 slots written), so the refusal rows refuse and the
/// admission rows (a 1 ms window) admit.
async fn server_time(store: &RedisStore, conn: &mut StoreConnection) {
    let mut windows = Vec::new();
    for (_, name, limit, window, held) in SERIES {
        let w =
            RedisWindow::new(store, name, Quota::new(limit, window).unwrap()).expect("a window");
        if held > 0 {
            fill(conn, w.key(), limit, window, held).await;
        }
        windows.push(w);
    }
    let mut blocks: Vec<Vec<f64>> = vec![Vec::new(); SERIES.len()];
    let mut unexpected = 0;
    for _ in 0..SERVER_CALLS / BLOCK {
        for (((label, ..), window), blocks) in SERIES.iter().zip(&windows).zip(&mut blocks) {
            let (calls, usec) = evalsha_stats(conn).await;
            for _ in 0..BLOCK {
                let admitted = window.try_acquire_checked().await.expect("redis").is_ok();
                unexpected += usize::from(admitted != label.starts_with("admission"));
            }
            let (calls_after, usec_after) = evalsha_stats(conn).await;
            blocks.push((usec_after - usec) as f64 / (calls_after - calls) as f64);
        }
    }
    println!(
        "\ntime per decision inside Redis (INFO commandstats, µs per EVALSHA; blocks of {BLOCK} \
         calls, the series in turn, {SERVER_CALLS} calls each; load {})",
        load()
    );
    if unexpected > 0 {
        println!("({unexpected} decisions went the other way than their row says)");
    }
    println!("| decision | median of blocks | min | max |\n|---|---:|---:|---:|");
    let mut medians = Vec::new();
    for ((label, ..), blocks) in SERIES.iter().zip(blocks) {
        let min = blocks.iter().copied().fold(f64::INFINITY, f64::min);
        let max = blocks.iter().copied().fold(0.0, f64::max);
        medians.push(median(blocks));
        println!(
            "| {label} | {:.2} | {min:.2} | {max:.2} |",
            medians[medians.len() - 1]
        );
    }
    println!(
        "refusal at 65 536 ÷ at 30: {:.2}×; limits alternating ÷ one limit: refusal {:.2}× at 30, \
         {:.2}× at 65 536; admission {:.2}× at 30, {:.2}× at 65 536; admission at 65 536 ÷ at 30: {:.2}×",
        medians[1] / medians[0],
        medians[2] / medians[0],
        medians[3] / medians[1],
        medians[6] / medians[4],
        medians[7] / medians[5],
        medians[5] / medians[4]
    );
}

/// EVALSHA calls Redis has run so far and the microseconds it spent in them
/// (`INFO commandstats`).
async fn evalsha_stats(conn: &mut StoreConnection) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    let Some(line) = info
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:"))
    else {
        return (0, 0);
    };
    let field = |name: &str| {
        line.split(',')
            .find_map(|pair| pair.strip_prefix(name))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    (field("calls="), field("usec="))
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

/// Memory of a window after one admission (at limit 30 and at 65 536) against an empty
/// string under a key name of the same length with an expiry too (the key's overhead),
/// and of a full window at limit 30 against the sliding log's key holding 30 members.
async fn memory(store: &RedisStore, conn: &mut StoreConnection) {
    let mut one = Vec::new();
    for (name, limit) in [("mem-one-030", LIMIT), ("mem-one-64k", BIG_LIMIT)] {
        let window =
            RedisWindow::new(store, name, Quota::new(limit, LONG_WINDOW).unwrap()).unwrap();
        window.try_acquire_checked().await.unwrap().unwrap();
        one.push(memory_usage(conn, window.key()).await);
    }
    let empty = RedisWindow::new(
        store,
        "mem-empty-0",
        Quota::new(LIMIT, LONG_WINDOW).unwrap(),
    )
    .unwrap();
    let _: () = redis::cmd("SET")
        .arg(empty.key())
        .arg("")
        .arg("PX")
        .arg(600_000)
        .query_async(conn)
        .await
        .unwrap();
    let overhead = memory_usage(conn, empty.key()).await;
    println!(
        "\nmemory after one admission (MEMORY USAGE … SAMPLES 0): limit 30 {} B, limit 65 536 {} B; \
         an empty string under a name as long, with an expiry, {overhead} B: +{} B and +{} B",
        one[0],
        one[1],
        one[0].saturating_sub(overhead),
        one[1].saturating_sub(overhead)
    );

    let full = RedisWindow::new(store, "memory", Quota::new(LIMIT, LONG_WINDOW).unwrap()).unwrap();
    for _ in 0..LIMIT {
        full.try_acquire_checked().await.unwrap().unwrap();
    }
    let log_key = full.key().replace(":window", ":log");
    let script = Script::new(SLIDING_LOG);
    for n in 0..LIMIT {
        let _: i64 = script
            .key(&log_key)
            .arg(LIMIT)
            .arg(LONG_WINDOW.as_micros() as u64)
            .arg(n)
            .invoke_async(conn)
            .await
            .unwrap();
    }
    let ours = memory_usage(conn, full.key()).await;
    let theirs = memory_usage(conn, &log_key).await;
    println!(
        "memory of a full window at limit {LIMIT}: backstop {ours} B, sliding log {theirs} B ({:.2}×)",
        ours as f64 / theirs as f64
    );
}

/// How a limited client's retry is asked.
#[derive(Clone, Copy)]
enum Retry {
    /// `RedisKeyedWindow::try_acquire`: the refusal cache answers while a refusal holds.
    Cached,
    /// `RedisKeyedWindow::try_acquire_checked`: Redis every time.
    Asked,
    /// `RedisAdmission::admit` with a per-client stage: the client's refusal is cached,
    /// the shared window is still peeked (which stage refuses decides `retry_after`).
    Door,
}

impl Retry {
    const ALL: [Retry; 3] = [Retry::Cached, Retry::Asked, Retry::Door];

    /// Whether the retry was refused (it must be: the client is over its limit).
    async fn refused(self, window: &RedisKeyedWindow, door: &RedisAdmission, client: &str) -> bool {
        match self {
            Retry::Cached => window.try_acquire(client).await.is_err(),
            Retry::Asked => matches!(window.try_acquire_checked(client).await, Ok(Err(_))),
            Retry::Door => matches!(
                door.admit(Some(client), RequestClass::Normal).await,
                Decision::Refused(Refusal::RateLimited {
                    scope: RateScope::PerClient,
                    ..
                })
            ),
        }
    }
}

/// A client over its per-client limit (30 per 600 s) retrying [`RETRIES`] times a round,
/// each [`Retry`] way in turn for [`ROUNDS`] rounds. Round trips are the EVALSHAs Redis
/// counted in the round (a decision or a peek each).
async fn refusal_cache(store: &RedisStore, conn: &mut StoreConnection) {
    let window =
        RedisKeyedWindow::new(store, "retry", Quota::new(LIMIT, LONG_WINDOW).unwrap()).unwrap();
    // The same name: the door's per-client stage uses the same client keys.
    let door = RedisAdmission::new(store, "retry", Limits::default())
        .and_then(|door| door.with_per_key(Quota::new(LIMIT, LONG_WINDOW).unwrap()))
        .expect("a door");
    let client = "hammering";
    for _ in 0..LIMIT {
        window.try_acquire_checked(client).await.unwrap().unwrap();
    }
    let mut per_retry: [Vec<f64>; 3] = Default::default();
    let mut trips: [Vec<f64>; 3] = Default::default();
    for _ in 0..ROUNDS {
        for (i, retry) in Retry::ALL.into_iter().enumerate() {
            let (before, _) = evalsha_stats(conn).await;
            let mut samples = Vec::with_capacity(RETRIES);
            for _ in 0..RETRIES {
                let started = Instant::now();
                let refused = retry.refused(&window, &door, client).await;
                samples.push(started.elapsed().as_secs_f64() * 1e6);
                assert!(refused, "a limited client is refused");
            }
            let calls = evalsha_stats(conn).await.0 - before;
            per_retry[i].push(median(samples));
            trips[i].push(calls as f64 / RETRIES as f64);
        }
    }
    let [cached, asked, door] = per_retry.map(median);
    let [trips_cached, trips_asked, trips_door] = trips.map(median);
    println!(
        "
a limited client's retries (median of {ROUNDS} rounds of {RETRIES}, in turn; load {}), \
         µs and round trips per retry:",
        load()
    );
    println!(
        "  RedisKeyedWindow::try_acquire (the refusal cache) {cached:.3} µs, {trips_cached:.3}; \
         try_acquire_checked (Redis every time) {asked:.3} µs, {trips_asked:.3} \
         ({:.4}× its time); RedisAdmission::admit with a per-client stage {door:.3} µs, {trips_door:.3}",
        cached / asked
    );
}

/// The 64-caller contest on a Redis Cluster (a door's keys share one hash tag, so one
/// node serves them, and the peers' keys carry the same tag).
async fn cluster(callers_list: &[usize]) {
    let Some((url, _cluster)) = backstop_testkit::redis::shared_cluster() else {
        println!("\nno Redis Cluster (redis-cli missing?): the cluster rows are skipped");
        return;
    };
    let store = RedisStore::connect(&url, store_options())
        .await
        .expect("connect to the cluster");
    Contenders::new(&store, "bench")
        .print_throughput("Redis Cluster, 3 primaries", callers_list)
        .await;
}

async fn version(conn: &mut StoreConnection) -> String {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned()
}

/// For a profiler: only `contender` at `callers`, for `seconds`.
async fn only(contenders: &Contenders, spec: &str) {
    let mut parts = spec.split(',');
    let which = parts.next().unwrap_or("backstop");
    let callers: usize = parts.next().and_then(|c| c.parse().ok()).unwrap_or(64);
    let seconds: u64 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(10);
    let contender = match which {
        "log" => &contenders.log,
        "gcra" => &contenders.gcra,
        _ => &contenders.backstop,
    };
    let rate = throughput_for(contender, callers, Duration::from_secs(seconds)).await;
    println!("{which} at {callers} callers for {seconds} s: {rate:.0} decisions/s");
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
        let store = RedisStore::connect(&url, store_options())
            .await
            .expect("connect");
        let mut conn = store.connection();
        let contenders = Contenders::new(&store, "bench");
        if let Ok(spec) = std::env::var("BACKSTOP_REDIS_BENCH_ONLY") {
            only(&contenders, &spec).await;
            return;
        }
        println!(
            "redis-server {} at {url}; limit {LIMIT} per {WINDOW:?}, one key; load {}",
            version(&mut conn).await,
            load()
        );
        let wanted = |section: &str| {
            std::env::var("BACKSTOP_REDIS_BENCH_SECTIONS")
                .map_or(true, |list| list.split(',').any(|s| s.trim() == section))
        };
        if wanted("single") {
            contenders
                .print_throughput("one redis-server", &[1, 16, 64])
                .await;
        }
        if wanted("cluster") {
            cluster(&[16, 64]).await;
        }
        if wanted("latency") {
            latency(&contenders, &mut conn).await;
        }
        if wanted("server") {
            server_time(&store, &mut conn).await;
        }
        if wanted("memory") {
            memory(&store, &mut conn).await;
        }
        if wanted("cache") {
            refusal_cache(&store, &mut conn).await;
        }
    });
}
