//! What the AI gateway adds to a chat completion: `POST /api/openai/v1/chat/completions` through
//! the real proxy, the same call through nginx as a plain reverse proxy (one HTTP hop, the
//! practical floor) and straight to the upstream, interleaved in rounds at 1 and 64 concurrent
//! clients. Also: CPU time per forwarded request of the proxy against nginx's, streaming time to
//! the first event, and the proxy's RSS under load and over up to 1,000,000 requests (every call
//! writes a usage row to SQLite, which is part of the cost measured).
//!
//! `cargo bench -p assegai-e2e --bench ai_gateway` (add `-- --budget` to give the agent an AI
//! budget, so every call is also reserved against it and settled; `-- --redis` to keep the rate
//! limits in a real Redis, started on a free loopback port, as a team deployment does). Uses `$ASSEGAI_BIN` if set,
//! else builds the release binary; nginx is `/usr/sbin/nginx` (Debian: `apt-get install
//! nginx-light`), and its column is skipped when it is missing. The upstream is a minimal axum server inside this process
//! answering fixed OpenAI-style bodies (not `FakeAi`, which records every request and paces its
//! streams at 150 ms, so it would be neither a cheap nor a fast baseline). Only loopback traffic;
//! bounded in count and time; prints numbers and targets (PASS/MISS) but never fails. Without
//! `--bench` (e.g. `cargo test --benches`) it does nothing.

use std::{
    convert::Infallible,
    io::Write,
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use assegai_e2e::{
    bench::{
        ProcStatus, ProxyChild, add_agent, assegai_cmd, clock_ticks_per_sec, make_clients, mib, percentile_ms,
        release_bin, verdict,
    },
    contains_bytes, fake_ai,
};
use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
    serve::ListenerExt,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// Rounds per concurrency level; each round sends a batch to every target, in rotating order.
const ROUNDS: usize = 20;
/// (clients, warm-up requests per target, requests per target per round).
const LEVELS: [(usize, usize, usize); 2] = [(1, 500, 500), (64, 4_000, 4_000)];
/// Streamed calls: rounds, and requests per target per round (1 client).
const STREAM_ROUNDS: usize = 20;
const STREAM_PER_ROUND: usize = 50;
/// The fixed stream: its first event goes out with the head, the rest this much later.
const STREAM_GAP: Duration = Duration::from_millis(2);
/// Requests through the proxy before the memory comparison ends, unless [`SOAK_BUDGET`] runs out.
const SOAK_TOTAL: usize = 1_000_000;
/// The proxy's RSS is read at every multiple of this many requests.
const SOAK_STEP: usize = 100_000;
/// Longest the soak may take.
const SOAK_BUDGET: Duration = Duration::from_secs(150);
const SOAK_CLIENTS: usize = 64;

const TARGET_ADDED_P50_MS: f64 = 0.2;
const TARGET_ADDED_P99_MS: f64 = 1.0;
const TARGET_CPU_RATIO: f64 = 1.5;
const TARGET_TTFB_MS: f64 = 1.0;
const TARGET_RSS_MIB: f64 = 40.0;
/// RSS change between the first 100k requests and the end still counted as "no growth"
/// (allocator noise).
const TARGET_GROWTH_MIB: f64 = 1.0;

const MODEL: &str = "gpt-4o-mini";
/// The key stored in the proxy (and injected by nginx, and sent by the direct client).
const KEY: &str = "sk-bench-0123456789abcdefghijklmnopqrstuvwxyzABCD";
const JSON_BODY: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}],"temperature":0}"#;
const STREAM_BODY: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}],"stream":true}"#;
const NGINX: &str = "/usr/sbin/nginx";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("ai_gateway: run with `cargo bench -p assegai-e2e --bench ai_gateway`; skipped");
        return;
    }
    match std::panic::catch_unwind(run) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => println!("ai_gateway benchmark skipped: {e}"),
        Err(_) => println!("ai_gateway benchmark skipped: it panicked (see above)"),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Direct,
    Nginx,
    Assegai,
}

/// One side of the comparison.
#[derive(Clone)]
struct Target {
    kind: Kind,
    name: &'static str,
    url: String,
    headers: Vec<(&'static str, String)>,
    /// The forwarding process (none for direct).
    pid: Option<u32>,
}

fn run() -> Result<(), String> {
    let bin = release_bin("ai_gateway")?;
    let upstream = Upstream::start()?;
    let home = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    // Every call then also runs the shared GCRA script in Redis (one round trip).
    let redis =
        std::env::args().any(|a| a == "--redis").then(|| assegai_e2e::redis::Redis::start_with_password("bench"));
    let config = format!(
        "{}[keys]\nbackend = \"file\"\n\n[providers.openai]\nbase_url = \"http://{}\"\n\n\
         [rate_limits]\nopenai = {{ requests = 1000000000, per_secs = 1 }}\n",
        redis.as_ref().map_or_else(String::new, |r| format!("redis_url = \"{}\"\n", r.url())),
        upstream.addr
    );
    std::fs::write(home.path().join("config.toml"), config).map_err(|e| format!("config.toml: {e}"))?;
    set_key(&bin, home.path())?;
    let mut manifest = json!({"name": "bench", "permissions": {"chains": ["eip155:31337"], "apis": ["openai"]}});
    // A budget no run can spend: every call is reserved and settled, none refused.
    let budgeted = std::env::args().any(|a| a == "--budget");
    if budgeted {
        manifest["ai_budget"] = json!({"daily_usd": "1000000", "monthly_usd": "1000000"});
    }
    let (id, token) = add_agent(&bin, home.path(), "bench", Some(&manifest))?;
    let proxy = ProxyChild::start(&bin, home.path(), "ai_gateway")?;
    let proxy_pid = proxy.pid();

    let nginx = if Path::new(NGINX).exists() {
        match Nginx::start(upstream.addr) {
            Ok(n) => Some(n),
            Err(e) => {
                println!("nginx column skipped: {e}");
                None
            }
        }
    } else {
        println!(
            "nginx column skipped: {NGINX} not found (Debian: `apt-get install -y nginx-light`; the bench runs \
             it with a generated config, no service needed)"
        );
        None
    };

    let agent_headers = vec![("X-Assegai-Agent-ID", id), ("X-Assegai-Agent-Token", token)];
    let mut targets = vec![Target {
        kind: Kind::Direct,
        name: "direct",
        url: format!("http://{}/v1/chat/completions", upstream.addr),
        headers: vec![("Authorization", format!("Bearer {KEY}"))],
        pid: None,
    }];
    if let Some(n) = &nginx {
        targets.push(Target {
            kind: Kind::Nginx,
            name: "nginx",
            url: format!("{}/api/openai/v1/chat/completions", n.url),
            headers: agent_headers.clone(),
            pid: Some(n.child.id()),
        });
    }
    targets.push(Target {
        kind: Kind::Assegai,
        name: "assegai",
        url: format!("{}/api/openai/v1/chat/completions", proxy.url),
        headers: agent_headers,
        pid: Some(proxy_pid),
    });

    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("proxy binary: {}", bin.display());
    println!(
        "agent: {}",
        if budgeted {
            "with an AI budget (every call reserved and settled)"
        } else {
            "no AI budget (`-- --budget` sets one)"
        }
    );
    println!(
        "rate limits: {}",
        if redis.is_some() {
            "shared, in a real Redis on loopback (`redis_url`)"
        } else {
            "in the proxy's memory (`-- --redis` keeps them in Redis)"
        }
    );
    println!(
        "upstream: minimal axum server in the bench process (one thread), fixed OpenAI chat-completions bodies \
         with usage; streams send their first event with the head and the rest {} ms later",
        STREAM_GAP.as_millis()
    );
    match &nginx {
        Some(n) => println!(
            "nginx: {} as a plain reverse proxy (1 process, upstream keepalive 64, proxy_buffering off, \
             injects the Authorization header)",
            n.version
        ),
        None => println!("nginx: not run"),
    }
    println!("machine: {cores} cores, load before: {}", load_average());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    // The first AI call reads the key from keys.enc (Argon2id, 64 MiB): a one-off peak, not load.
    // Reset the peak afterwards (`clear_refs` 5), so VmHWM covers only what follows.
    let assegai = targets.iter().find(|t| t.kind == Kind::Assegai).cloned().ok_or("no assegai target")?;
    rt.block_on(async { call(&make_clients(1)?[0], &assegai, false).await })
        .map_err(|e| format!("the first call through the proxy failed: {e}"))?;
    let mut sent = 1usize;
    let first_call = read_mem(proxy_pid)?;
    let hwm_reset = std::fs::write(format!("/proc/{proxy_pid}/clear_refs"), "5").is_ok();
    let idle = read_mem(proxy_pid)?;
    let mut watched = vec![proxy_pid];
    if let Some(n) = &nginx {
        watched.push(n.child.id());
    }
    let sampler = RssSampler::start(watched);

    let mut levels = Vec::new();
    for (clients, warmup, per_round) in LEVELS {
        eprintln!("ai_gateway: {clients} client(s), {ROUNDS} rounds of {per_round} requests per target");
        levels.push(rt.block_on(measure_level(&targets, &upstream, clients, warmup, per_round, &mut sent))?);
    }
    eprintln!("ai_gateway: streamed calls, 1 client");
    let streaming = rt.block_on(measure_streaming(&targets, &mut sent))?;
    eprintln!("ai_gateway: soak through the proxy, up to {SOAK_TOTAL} requests or {} s", SOAK_BUDGET.as_secs());
    let soak = rt.block_on(soak(&assegai, proxy_pid, &mut sent))?;
    let peaks = sampler.finish();
    let after = read_mem(proxy_pid)?;
    let recorded = recorded_calls(&bin, home.path(), sent);
    let elapsed = started.elapsed();

    // ---- Report ----------------------------------------------------------------------------
    println!();
    println!(
        "non-streamed POST /v1/chat/completions ({} B request, {} B reply with usage), {ROUNDS} rounds per level, \
         targets interleaved; times in ms",
        JSON_BODY.len(),
        upstream.json_len
    );
    println!(
        "{:<8} {:<8} {:>8} {:>9} {:>9} {:>10} {:>10} {:>8} {:>6}  target (assegai)",
        "clients", "target", "requests", "p50 ms", "p99 ms", "added p50", "added p99", "req/s", "errors"
    );
    for l in &levels {
        let direct = &l.stats[0];
        for (t, s) in targets.iter().zip(&l.stats) {
            let (a50, a99) = (s.p50 - direct.p50, s.p99 - direct.p99);
            let (added50, added99) = if t.kind == Kind::Direct {
                ("-".to_owned(), "-".to_owned())
            } else {
                (format!("{a50:.3}"), format!("{a99:.3}"))
            };
            let verdicts = if t.kind == Kind::Assegai {
                format!(
                    "p50 {} (<= {TARGET_ADDED_P50_MS} ms), p99 {} (<= {TARGET_ADDED_P99_MS} ms)",
                    verdict(a50 <= TARGET_ADDED_P50_MS),
                    verdict(a99 <= TARGET_ADDED_P99_MS)
                )
            } else {
                String::new()
            };
            println!(
                "{:<8} {:<8} {:>8} {:>9.3} {:>9.3} {:>10} {:>10} {:>8.0} {:>6}  {verdicts}",
                l.clients, t.name, s.n, s.p50, s.p99, added50, added99, s.rate, s.errors
            );
            if !s.first_error.is_empty() {
                println!("         first error: {}", s.first_error);
            }
        }
    }
    if LEVELS.iter().any(|&(clients, _, _)| clients > cores) {
        println!(
            "note: with more clients than cores, client, upstream and proxy saturate the CPU, so latency there is \
             about clients / cores x total CPU per request (queueing): any hop adds its CPU time x queue depth; \
             nginx's added latency is the floor for one hop"
        );
    }

    println!();
    println!("CPU time per request, µs (utime+stime from /proc/<pid>/stat, {} ticks/s)", clock_ticks_per_sec());
    println!(
        "{:<8} {:<8} {:>9} {:>9} {:>9}  target (assegai at 64 clients)",
        "clients", "target", "forwarder", "client", "upstream"
    );
    for l in &levels {
        let nginx_cpu = targets.iter().zip(&l.stats).find(|(t, _)| t.kind == Kind::Nginx).map(|(_, s)| s.forwarder_us);
        for (t, s) in targets.iter().zip(&l.stats) {
            let fwd = if t.kind == Kind::Direct { "-".to_owned() } else { format!("{:.1}", s.forwarder_us) };
            let note = match (t.kind, nginx_cpu) {
                (Kind::Assegai, Some(n)) if n > 0.0 => {
                    let ratio = s.forwarder_us / n;
                    if l.clients == 64 {
                        format!("{ratio:.2}x nginx  {} (<= {TARGET_CPU_RATIO}x)", verdict(ratio <= TARGET_CPU_RATIO))
                    } else {
                        format!("{ratio:.2}x nginx")
                    }
                }
                (Kind::Assegai, _) => "no nginx figure to compare with".to_owned(),
                _ => String::new(),
            };
            println!("{:<8} {:<8} {:>9} {:>9.1} {:>9.1}  {note}", l.clients, t.name, fwd, s.client_us, s.upstream_us);
        }
    }
    println!("(client = this process minus the upstream thread: reqwest clients, runtime, RSS sampler)");
    for l in &levels {
        print_threads(&format!("assegai threads at {} clients", l.clients), &l.threads, l.assegai_requests);
    }
    print_threads(&format!("assegai threads over the soak ({} requests)", soak.requests), &soak.threads, soak.requests);

    println!();
    println!(
        "streamed POST /v1/chat/completions (\"stream\": true, no usage asked), 1 client, {} per target, ms; \
         1st evt = first complete SSE event, total = whole stream (upstream sends the rest {} ms after the first)",
        STREAM_ROUNDS * STREAM_PER_ROUND,
        STREAM_GAP.as_millis()
    );
    println!(
        "{:<8} {:>12} {:>12} {:>10} {:>10} {:>10} {:>11} {:>6}  target (assegai, first event)",
        "target", "1st evt p50", "1st evt p99", "added p50", "added p99", "total p50", "added total", "errors"
    );
    let sd = &streaming[0];
    for (t, s) in targets.iter().zip(&streaming) {
        let (a50, a99) = (s.ttfb_p50 - sd.ttfb_p50, s.ttfb_p99 - sd.ttfb_p99);
        let (added50, added99, added_total) = if t.kind == Kind::Direct {
            ("-".to_owned(), "-".to_owned(), "-".to_owned())
        } else {
            (format!("{a50:.3}"), format!("{a99:.3}"), format!("{:.3}", s.total_p50 - sd.total_p50))
        };
        let v = if t.kind == Kind::Assegai {
            format!(
                "p50 {} p99 {} (within {TARGET_TTFB_MS} ms of direct)",
                verdict(a50 <= TARGET_TTFB_MS),
                verdict(a99 <= TARGET_TTFB_MS)
            )
        } else {
            String::new()
        };
        println!(
            "{:<8} {:>12.3} {:>12.3} {:>10} {:>10} {:>10.3} {:>11} {:>6}  {v}",
            t.name, s.ttfb_p50, s.ttfb_p99, added50, added99, s.total_p50, added_total, s.errors
        );
        if !s.first_error.is_empty() {
            println!("         first error: {}", s.first_error);
        }
    }

    println!();
    let max_rss = peaks.first().copied().unwrap_or(0);
    // Without the reset, VmHWM still holds the first call's key derivation: use the samples only.
    let under_load = if hwm_reset { max_rss.max(after.hwm_kb) } else { max_rss };
    println!(
        "assegai RSS: idle {:.1} MiB (after its first call, whose keys.enc decryption peaks at {:.1} MiB)",
        mib(idle.rss_kb),
        mib(first_call.hwm_kb)
    );
    println!(
        "assegai RSS under load: max sampled every 50 ms {:.1} MiB, peak (VmHWM{}) {:.1} MiB  {} (<= {TARGET_RSS_MIB} MiB)",
        mib(max_rss),
        if hwm_reset { " since the first call" } else { " since start, includes that peak" },
        mib(after.hwm_kb),
        verdict(mib(under_load) <= TARGET_RSS_MIB)
    );
    if let (Some(n), Some(peak)) = (&nginx, peaks.get(1)) {
        let now = read_mem(n.child.id()).map(|m| mib(m.rss_kb)).unwrap_or(f64::NAN);
        println!("nginx RSS for comparison: max sampled {:.1} MiB, now {now:.1} MiB", mib(*peak));
    }
    let series: Vec<String> = soak.rss.iter().map(|(n, kb)| format!("{}k {:.1}", n / 1000, mib(*kb))).collect();
    println!("assegai RSS (MiB) after N proxied requests: {}", series.join(", "));
    match (soak.rss.iter().find(|(n, _)| *n >= SOAK_STEP), soak.rss.last()) {
        (Some(&(n0, first)), Some(&(n1, last))) if n1 > n0 => {
            let growth = mib(last) - mib(first);
            println!(
                "growth from {n0} to {n1} requests: {growth:+.2} MiB  {} (<= {TARGET_GROWTH_MIB} MiB){}",
                verdict(growth <= TARGET_GROWTH_MIB),
                if n1 < SOAK_TOTAL {
                    format!(" -- only {n1} of {SOAK_TOTAL} requests fit in the {} s budget", SOAK_BUDGET.as_secs())
                } else {
                    String::new()
                }
            );
        }
        _ => println!("growth: not measured (the soak did not get past {SOAK_STEP} requests)"),
    }
    println!(
        "soak: {} requests at {SOAK_CLIENTS} clients in {:.1} s ({:.0} req/s), {} errors{}; assegai CPU {:.1} µs/request",
        soak.requests,
        soak.wall.as_secs_f64(),
        soak.requests as f64 / soak.wall.as_secs_f64().max(1e-9),
        soak.errors,
        if soak.first_error.is_empty() { String::new() } else { format!(" (first: {})", soak.first_error) },
        soak.cpu_us
    );
    let db = home.path().join("assegai.db");
    let db_mib = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len() as f64 / (1024.0 * 1024.0))
        .sum::<f64>();
    println!("usage rows: {recorded} (of {sent} proxied calls); database {db_mib:.1} MiB");
    println!("load after: {}; measured in {:.1} s", load_average(), elapsed.as_secs_f64());
    drop(proxy);
    drop(nginx);
    drop(upstream);
    Ok(())
}

fn print_threads(title: &str, threads: &[(String, f64)], requests: usize) {
    if threads.is_empty() || requests == 0 {
        return;
    }
    let list: Vec<String> = threads.iter().map(|(name, us)| format!("{name} {us:.1}")).collect();
    println!("{title}, µs/request: {}", list.join(", "));
}

// ---- Measuring ------------------------------------------------------------------------------

/// Latencies of one or more batches against one target.
#[derive(Default)]
struct Batch {
    /// Whole exchange, ns.
    total_ns: Vec<u64>,
    /// Until the first complete SSE event, ns (streamed calls only).
    first_ns: Vec<u64>,
    wall: Duration,
    errors: usize,
    first_error: String,
    /// Clock ticks of this process and of the upstream thread meanwhile.
    bench_ticks: u64,
    upstream_ticks: u64,
}

impl Batch {
    fn absorb(&mut self, other: Batch) {
        self.total_ns.extend(other.total_ns);
        self.first_ns.extend(other.first_ns);
        self.wall += other.wall;
        self.errors += other.errors;
        self.bench_ticks += other.bench_ticks;
        self.upstream_ticks += other.upstream_ticks;
        if self.first_error.is_empty() {
            self.first_error = other.first_error;
        }
    }

    fn requests(&self) -> usize {
        self.total_ns.len() + self.errors
    }
}

fn us_per_tick() -> f64 {
    1e6 / clock_ticks_per_sec() as f64
}

/// One target at one concurrency.
struct Stats {
    n: usize,
    p50: f64,
    p99: f64,
    rate: f64,
    errors: usize,
    first_error: String,
    /// CPU µs per request: the forwarding process (whole level), the bench's clients, the upstream.
    forwarder_us: f64,
    client_us: f64,
    upstream_us: f64,
}

struct Level {
    clients: usize,
    stats: Vec<Stats>,
    /// Per-thread CPU of the proxy, µs per proxied request.
    threads: Vec<(String, f64)>,
    assegai_requests: usize,
}

async fn measure_level(
    targets: &[Target],
    upstream: &Upstream,
    clients: usize,
    warmup: usize,
    per_round: usize,
    sent: &mut usize,
) -> Result<Level, String> {
    // Separate clients per target, so each client keeps one connection to one server.
    let pools: Vec<Vec<reqwest::Client>> = targets.iter().map(|_| make_clients(clients)).collect::<Result<_, _>>()?;
    for (t, c) in targets.iter().zip(&pools) {
        let w = run_batch(t, c, warmup, false).await?;
        if w.errors > 0 {
            return Err(format!("{} errors during warm-up against {}: {}", w.errors, t.name, w.first_error));
        }
        count(t, warmup, sent);
    }
    let pids: Vec<Option<u32>> = targets.iter().map(|t| t.pid).collect();
    let proxy_pid = targets.iter().find(|t| t.kind == Kind::Assegai).and_then(|t| t.pid);
    let before: Vec<u64> = pids.iter().map(|p| p.map_or(0, pid_ticks)).collect();
    let threads_before = proxy_pid.map(thread_ticks).unwrap_or_default();
    let mut batches: Vec<Batch> = targets.iter().map(|_| Batch::default()).collect();
    for round in 0..ROUNDS {
        // Rotate the order, so drift and warm caches hit every target alike.
        for k in 0..targets.len() {
            let i = (round + k) % targets.len();
            let b = metered(upstream, run_batch(&targets[i], &pools[i], per_round, false)).await?;
            batches[i].absorb(b);
            count(&targets[i], per_round, sent);
        }
    }
    // Let the usage writer finish the last rows, so their cost is counted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after: Vec<u64> = pids.iter().map(|p| p.map_or(0, pid_ticks)).collect();
    let threads_after = proxy_pid.map(thread_ticks).unwrap_or_default();
    let assegai_requests = ROUNDS * per_round;
    let threads = thread_split(&threads_before, &threads_after, assegai_requests);

    let stats = batches
        .into_iter()
        .zip(before.iter().zip(&after))
        .map(|(mut b, (t0, t1))| {
            b.total_ns.sort_unstable();
            let n = b.requests().max(1) as f64;
            let upstream_us = b.upstream_ticks as f64 * us_per_tick() / n;
            let bench_us = b.bench_ticks as f64 * us_per_tick() / n;
            Stats {
                n: b.requests(),
                p50: percentile_ms(&b.total_ns, 0.50),
                p99: percentile_ms(&b.total_ns, 0.99),
                rate: b.requests() as f64 / b.wall.as_secs_f64().max(1e-9),
                errors: b.errors,
                first_error: b.first_error,
                forwarder_us: t1.saturating_sub(*t0) as f64 * us_per_tick() / n,
                client_us: bench_us - upstream_us,
                upstream_us,
            }
        })
        .collect();
    Ok(Level { clients, stats, threads, assegai_requests })
}

fn count(t: &Target, n: usize, sent: &mut usize) {
    if t.kind == Kind::Assegai {
        *sent += n;
    }
}

struct StreamStats {
    ttfb_p50: f64,
    ttfb_p99: f64,
    total_p50: f64,
    errors: usize,
    first_error: String,
}

async fn measure_streaming(targets: &[Target], sent: &mut usize) -> Result<Vec<StreamStats>, String> {
    let pools: Vec<Vec<reqwest::Client>> = targets.iter().map(|_| make_clients(1)).collect::<Result<_, _>>()?;
    for (t, c) in targets.iter().zip(&pools) {
        let w = run_batch(t, c, STREAM_PER_ROUND, true).await?;
        if w.errors > 0 {
            return Err(format!("{} errors in streamed warm-up against {}: {}", w.errors, t.name, w.first_error));
        }
        count(t, STREAM_PER_ROUND, sent);
    }
    let mut batches: Vec<Batch> = targets.iter().map(|_| Batch::default()).collect();
    for round in 0..STREAM_ROUNDS {
        for k in 0..targets.len() {
            let i = (round + k) % targets.len();
            batches[i].absorb(run_batch(&targets[i], &pools[i], STREAM_PER_ROUND, true).await?);
            count(&targets[i], STREAM_PER_ROUND, sent);
        }
    }
    Ok(batches
        .into_iter()
        .map(|mut b| {
            b.total_ns.sort_unstable();
            b.first_ns.sort_unstable();
            StreamStats {
                ttfb_p50: percentile_ms(&b.first_ns, 0.50),
                ttfb_p99: percentile_ms(&b.first_ns, 0.99),
                total_p50: percentile_ms(&b.total_ns, 0.50),
                errors: b.errors,
                first_error: b.first_error,
            }
        })
        .collect())
}

struct Soak {
    requests: usize,
    wall: Duration,
    errors: usize,
    first_error: String,
    /// (proxied requests so far, VmRSS kB) at every [`SOAK_STEP`] and at the end.
    rss: Vec<(usize, u64)>,
    cpu_us: f64,
    threads: Vec<(String, f64)>,
}

/// Sends requests through the proxy until [`SOAK_TOTAL`] in all or [`SOAK_BUDGET`] is spent,
/// reading its RSS at every multiple of [`SOAK_STEP`].
async fn soak(target: &Target, pid: u32, sent: &mut usize) -> Result<Soak, String> {
    let clients = make_clients(SOAK_CLIENTS)?;
    let started = Instant::now();
    let (t0, th0) = (pid_ticks(pid), thread_ticks(pid));
    let mut s = Soak {
        requests: 0,
        wall: Duration::ZERO,
        errors: 0,
        first_error: String::new(),
        rss: Vec::new(),
        cpu_us: 0.0,
        threads: Vec::new(),
    };
    while *sent < SOAK_TOTAL && started.elapsed() < SOAK_BUDGET {
        let next = (*sent / SOAK_STEP + 1) * SOAK_STEP;
        let n = (next - *sent).min(25_000);
        let b = run_batch(target, &clients, n, false).await?;
        *sent += n;
        s.requests += n;
        s.errors += b.errors;
        if s.first_error.is_empty() {
            s.first_error = b.first_error;
        }
        if (*sent).is_multiple_of(SOAK_STEP) {
            s.rss.push((*sent, read_mem(pid)?.rss_kb));
        }
    }
    s.wall = started.elapsed();
    if s.rss.last().is_none_or(|(n, _)| *n != *sent) {
        s.rss.push((*sent, read_mem(pid)?.rss_kb));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.cpu_us = pid_ticks(pid).saturating_sub(t0) as f64 * us_per_tick() / s.requests.max(1) as f64;
    s.threads = thread_split(&th0, &thread_ticks(pid), s.requests);
    Ok(s)
}

/// Runs `batch`, recording the CPU this process and the upstream thread spent meanwhile.
async fn metered(upstream: &Upstream, batch: impl Future<Output = Result<Batch, String>>) -> Result<Batch, String> {
    let (b0, u0) = (pid_ticks_self(), upstream.ticks());
    let mut b = batch.await?;
    b.bench_ticks = pid_ticks_self().saturating_sub(b0);
    b.upstream_ticks = upstream.ticks().saturating_sub(u0);
    Ok(b)
}

/// Sends `total` requests to `target`, split evenly over `clients` concurrent tasks.
async fn run_batch(target: &Target, clients: &[reqwest::Client], total: usize, stream: bool) -> Result<Batch, String> {
    let n = clients.len();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for (i, client) in clients.iter().enumerate() {
        let count = total / n + usize::from(i < total % n);
        let client = client.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut b = Batch { total_ns: Vec::with_capacity(count), ..Batch::default() };
            for _ in 0..count {
                match call(&client, &target, stream).await {
                    Ok((total, first)) => {
                        b.total_ns.push(total);
                        b.first_ns.extend(first);
                    }
                    Err(e) => {
                        b.errors += 1;
                        if b.first_error.is_empty() {
                            b.first_error = e;
                        }
                    }
                }
            }
            b
        }));
    }
    let mut all = Batch::default();
    for t in tasks {
        all.absorb(t.await.map_err(|e| format!("a client task failed: {e}"))?);
    }
    all.wall = started.elapsed();
    Ok(all)
}

/// One call; returns (ns until the whole reply was read, ns until the first SSE event).
async fn call(client: &reqwest::Client, target: &Target, stream: bool) -> Result<(u64, Option<u64>), String> {
    let t0 = Instant::now();
    let mut req = client.post(&target.url).header("content-type", "application/json");
    req = req.body(if stream { STREAM_BODY } else { JSON_BODY });
    for (k, v) in &target.headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    if !stream || !status.is_success() {
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        let total = t0.elapsed().as_nanos() as u64;
        return if status.is_success() && contains_bytes(&body, b"\"usage\"") {
            Ok((total, None))
        } else {
            Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)))
        };
    }
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut first = None;
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
        if first.is_none() && contains_bytes(&buf, b"\n\n") {
            first = Some(t0.elapsed().as_nanos() as u64);
        }
    }
    let total = t0.elapsed().as_nanos() as u64;
    // The client did not ask for usage, so it must see none.
    if !buf.ends_with(b"data: [DONE]\n\n") || contains_bytes(&buf, b"\"usage\"") {
        return Err(format!("unexpected stream: {}", String::from_utf8_lossy(&buf)));
    }
    Ok((total, first))
}

// ---- The upstream ---------------------------------------------------------------------------

/// Fixed replies, built once.
struct Replies {
    json: Bytes,
    /// (first event, the rest) without and with the usage the proxy asks for.
    stream_plain: (Bytes, Bytes),
    stream_usage: (Bytes, Bytes),
}

fn replies() -> Replies {
    let usage = fake_ai::openai_usage(MODEL);
    let completion = json!({
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_760_000_000u64,
        "model": MODEL,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": fake_ai::content(), "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": "fp_bench"
    });
    let stream = |include_usage: bool| -> (Bytes, Bytes) {
        let chunk = |choices: Value| {
            let mut c = json!({
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 1_760_000_000u64,
                "model": MODEL,
                "service_tier": "default",
                "system_fingerprint": "fp_bench",
                "choices": choices,
            });
            if include_usage {
                c["usage"] = Value::Null;
            }
            c
        };
        let event = |v: Value| format!("data: {v}\n\n");
        let first = event(chunk(json!([{
            "index": 0, "delta": {"role": "assistant", "content": "", "refusal": null},
            "logprobs": null, "finish_reason": null
        }])));
        let mut rest = String::new();
        for piece in fake_ai::CONTENT_PIECES {
            rest.push_str(&event(chunk(
                json!([{"index": 0, "delta": {"content": piece}, "logprobs": null, "finish_reason": null}]),
            )));
        }
        rest.push_str(&event(chunk(json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]))));
        if include_usage {
            let mut u = chunk(json!([]));
            u["usage"] = usage.clone();
            rest.push_str(&event(u));
        }
        rest.push_str("data: [DONE]\n\n");
        (Bytes::from(first), Bytes::from(rest))
    };
    Replies { json: Bytes::from(completion.to_string()), stream_plain: stream(false), stream_usage: stream(true) }
}

/// `POST /v1/chat/completions`: 401 without a Bearer key, else the fixed JSON, or the fixed stream
/// for `"stream":true` (with the usage chunk when `"include_usage":true`).
async fn chat(State(r): State<Arc<Replies>>, headers: HeaderMap, body: Bytes) -> Response {
    let authorized = headers.get(header::AUTHORIZATION).is_some_and(|v| v.as_bytes().starts_with(b"Bearer sk-"));
    if !authorized {
        let error = r#"{"error":{"message":"no key","type":"invalid_request_error","param":null,"code":null}}"#;
        return (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, "application/json")], error).into_response();
    }
    if !contains_bytes(&body, b"\"stream\":true") {
        return ([(header::CONTENT_TYPE, "application/json")], r.json.clone()).into_response();
    }
    let (first, rest) =
        if contains_bytes(&body, b"\"include_usage\":true") { r.stream_usage.clone() } else { r.stream_plain.clone() };
    let events = futures_util::stream::unfold(0u8, move |step| {
        let (first, rest) = (first.clone(), rest.clone());
        async move {
            match step {
                0 => Some((Ok::<_, Infallible>(first), 1)),
                1 => {
                    tokio::time::sleep(STREAM_GAP).await;
                    Some((Ok(rest), 2))
                }
                _ => None,
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(events))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The upstream server: one thread, a current-thread runtime; stops when dropped.
struct Upstream {
    addr: SocketAddr,
    /// The server thread's id, for its CPU time.
    tid: Option<u32>,
    json_len: usize,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Upstream {
    fn start() -> Result<Self, String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind the upstream: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let replies = Arc::new(replies());
        let json_len = replies.json.len();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (tid_tx, tid_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("bench-upstream".into())
            .spawn(move || {
                let _ = tid_tx.send(current_tid());
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => return eprintln!("ai_gateway: upstream runtime: {e}"),
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l.tap_io(|tcp| {
                            let _ = tcp.set_nodelay(true);
                        }),
                        Err(e) => return eprintln!("ai_gateway: upstream listener: {e}"),
                    };
                    let app = Router::new().route("/v1/chat/completions", post(chat)).with_state(replies);
                    tokio::select! {
                        r = axum::serve(listener, app) => {
                            if let Err(e) = r {
                                eprintln!("ai_gateway: upstream server: {e}");
                            }
                        }
                        _ = stop_rx => {}
                    }
                });
            })
            .map_err(|e| format!("spawn the upstream thread: {e}"))?;
        let tid = tid_rx.recv_timeout(Duration::from_secs(5)).ok().flatten();
        Ok(Upstream { addr, tid, json_len, _stop: stop })
    }

    /// CPU ticks of the server thread (0 when unknown).
    fn ticks(&self) -> u64 {
        self.tid.and_then(|t| stat_ticks(&format!("/proc/self/task/{t}/stat"))).unwrap_or(0)
    }
}

/// This thread's id, from `/proc/thread-self` (`PID/task/TID`).
fn current_tid() -> Option<u32> {
    std::fs::read_link("/proc/thread-self").ok()?.file_name()?.to_str()?.parse().ok()
}

// ---- nginx ----------------------------------------------------------------------------------

/// nginx as one process (`master_process off`) with a generated config; killed on drop.
struct Nginx {
    child: Child,
    url: String,
    version: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(upstream: SocketAddr) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("cannot find a free port: {e}"))?
            .port();
        let d = dir.path().display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    upstream ai {{
        server {upstream};
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /api/openai/ {{
            proxy_pass http://ai/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer {KEY}";
            proxy_buffering off;
        }}
    }}
}}
"#
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| format!("write nginx.conf: {e}"))?;
        let version = Command::new(NGINX)
            .arg("-v")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().trim_start_matches("nginx version: ").to_owned())
            .unwrap_or_else(|_| "nginx".into());
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {NGINX}: {e}"))?;
        let mut nginx = Nginx { child, url: format!("http://127.0.0.1:{port}"), version, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(nginx);
            }
            let exited = matches!(nginx.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                let log = std::fs::read_to_string(nginx._dir.path().join("error.log")).unwrap_or_default();
                return Err(format!("nginx did not start listening on port {port}: {}", log.trim()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- The proxy ------------------------------------------------------------------------------

/// `assegai keys set openai --stdin`.
fn set_key(bin: &Path, home: &Path) -> Result<(), String> {
    let mut child = assegai_cmd(bin, home, &["keys", "set", "openai", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(KEY.as_bytes()).map_err(|e| format!("keys set: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("keys set: {e}"))?;
    if !out.status.success() {
        return Err(format!("keys set openai failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

/// The calls `assegai usage --since all --json` counts, polled until it reaches `expected`
/// (the writer may lag) or 20 s pass.
fn recorded_calls(bin: &Path, home: &Path, expected: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = assegai_cmd(bin, home, &["usage", "--since", "all", "--json"]).stdin(Stdio::null()).output();
        let calls = match out {
            Ok(o) if o.status.success() => {
                let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
                match v["total"]["calls"].as_u64() {
                    Some(n) => n,
                    None => return format!("unreadable `usage --json` output: {v}"),
                }
            }
            Ok(o) => return format!("`assegai usage` failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
            Err(e) => return format!("cannot run `assegai usage`: {e}"),
        };
        if calls as usize >= expected {
            return calls.to_string();
        }
        if Instant::now() > deadline {
            return format!("{calls} after waiting 20 s");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

// ---- /proc ----------------------------------------------------------------------------------

/// utime + stime, in clock ticks, from a `stat` file.
fn stat_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name, starting with field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn pid_ticks(pid: u32) -> u64 {
    stat_ticks(&format!("/proc/{pid}/stat")).unwrap_or(0)
}

fn pid_ticks_self() -> u64 {
    stat_ticks("/proc/self/stat").unwrap_or(0)
}

/// (tid, thread name, ticks) of every thread of `pid`.
fn thread_ticks(pid: u32) -> Vec<(u32, String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut out: Vec<(u32, String, u64)> = dir
        .flatten()
        .filter_map(|e| {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?.to_owned();
            Some((tid, name, stat_ticks(&e.path().join("stat").to_string_lossy())?))
        })
        .collect();
    out.sort_unstable();
    out
}

/// Per-thread CPU µs per request between two snapshots (threads that used any).
fn thread_split(before: &[(u32, String, u64)], after: &[(u32, String, u64)], requests: usize) -> Vec<(String, f64)> {
    after
        .iter()
        .filter_map(|(tid, name, t1)| {
            let t0 = before.iter().find(|(b, _, _)| b == tid).map_or(0, |(_, _, t)| *t);
            let d = t1.saturating_sub(t0);
            (d > 0).then(|| (format!("{name}[{tid}]"), d as f64 * us_per_tick() / requests.max(1) as f64))
        })
        .collect()
}

struct Mem {
    rss_kb: u64,
    hwm_kb: u64,
}

/// VmRSS and VmHWM of `pid`, in kB.
fn read_mem(pid: u32) -> Result<Mem, String> {
    let status = ProcStatus::read(pid)?;
    Ok(Mem { rss_kb: status.field("VmRSS:")?, hwm_kb: status.field("VmHWM:")? })
}

/// Reads the VmRSS of some processes every 50 ms and keeps each one's maximum.
struct RssSampler {
    stop: Arc<AtomicBool>,
    max: Arc<Vec<AtomicU64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pids: Vec<u32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let max: Arc<Vec<AtomicU64>> = Arc::new(pids.iter().map(|_| AtomicU64::new(0)).collect());
        let (s, m) = (Arc::clone(&stop), Arc::clone(&max));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for (pid, slot) in pids.iter().zip(m.iter()) {
                    if let Ok(mem) = read_mem(*pid) {
                        slot.fetch_max(mem.rss_kb, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        RssSampler { stop, max, thread: Some(thread) }
    }

    /// Stops sampling; the maximum VmRSS (kB) of each process, in the order given.
    fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max.iter().map(|m| m.load(Ordering::Relaxed)).collect()
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
