//! What the proxy adds to a chain read: `POST /agent/query-chain` (eth_blockNumber) through the
//! real proxy against the same JSON-RPC call sent straight to Anvil, at 1 and 32 concurrent
//! clients, plus the proxy's resident memory before and after 100,000 proxied requests.
//!
//! `cargo bench -p assegai-e2e --bench query_chain`. Uses `$ASSEGAI_BIN` if set, else builds the
//! release binary. Only loopback traffic; bounded in count; prints numbers and targets
//! (PASS/MISS) but never fails. Without `--bench` (e.g. `cargo test --benches`) it does nothing.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use assegai_e2e::{
    TestEnv, anvil_bin,
    bench::{ProcStatus, ProxyChild, add_agent, clock_ticks_per_sec, make_clients, mib, release_bin, verdict},
    contains_bytes,
};

/// Requests per target in the warm-up, at each concurrency.
const WARMUP: usize = 2_000;
/// Alternating direct/proxied rounds per concurrency level.
const ROUNDS: usize = 20;
/// (clients, requests per target per round). Warm-up and rounds stay under [`RSS_AFTER`]
/// proxied requests; the rest are sent before the memory reading.
const LEVELS: [(usize, usize); 2] = [(1, 1_000), (32, 3_600)];
/// Proxied requests after which the proxy's RSS is read.
const RSS_AFTER: usize = 100_000;

const TARGET_ADDED_MS: f64 = 0.3;
const TARGET_RSS_MIB: f64 = 30.0;

const DIRECT_BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#;
const PROXY_BODY: &str = r#"{"chain":"eip155:31337","method":"eth_blockNumber","params":[]}"#;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("query_chain: run with `cargo bench -p assegai-e2e --bench query_chain`; skipped");
        return;
    }
    match std::panic::catch_unwind(run) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => println!("query_chain benchmark skipped: {e}"),
        Err(_) => println!("query_chain benchmark skipped: it panicked (see above)"),
    }
}

/// One side of the comparison.
#[derive(Clone)]
struct Target {
    url: String,
    body: &'static str,
    headers: Vec<(&'static str, String)>,
}

fn run() -> Result<(), String> {
    let bin = release_bin("query_chain")?;
    let env = TestEnv::with_anvil();
    env.write_config("[rate_limits]\nrpc = { requests = 1000000000, per_secs = 1 }\n");
    let (id, token) = add_agent(&bin, env.home(), "bench", None)?;
    let proxy = ProxyChild::start(&bin, env.home(), "query_chain")?;
    let pid = proxy.pid();
    let idle = read_rss(pid)?;
    let procs = Procs { proxy: pid, anvil: find_anvil() };

    let direct = Target { url: env.anvil().url.clone(), body: DIRECT_BODY, headers: vec![] };
    let proxied = Target {
        url: format!("{}/agent/query-chain", proxy.url),
        body: PROXY_BODY,
        headers: vec![("X-Assegai-Agent-ID", id), ("X-Assegai-Agent-Token", token)],
    };

    println!("proxy binary: {}", bin.display());
    println!("anvil: {}", anvil_version());

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mut proxied_sent = 0usize;
    let started = Instant::now();
    for (clients, per_round) in LEVELS {
        let row = rt.block_on(measure_level(&direct, &proxied, clients, per_round, &procs, &mut proxied_sent))?;
        rows.push(row);
    }
    if proxied_sent < RSS_AFTER {
        let rest = RSS_AFTER - proxied_sent;
        let r = rt.block_on(async {
            let clients = make_clients(32)?;
            run_batch(&proxied, &clients, rest).await
        })?;
        proxied_sent += rest;
        if r.errors > 0 {
            println!("warning: {} errors in the extra proxied requests (first: {})", r.errors, r.first_error);
        }
    }
    // Let the connections of the finished batches close before reading memory.
    std::thread::sleep(Duration::from_millis(200));
    let after = read_rss(pid)?;
    let elapsed = started.elapsed();

    println!();
    println!(
        "query-chain overhead (eth_blockNumber, {}), {} rounds alternating direct/proxied per level",
        anvil_version(),
        ROUNDS
    );
    println!(
        "{:<8} {:>9} {:>11} {:>11} {:>11} {:>11} {:>11} {:>9} {:>9}  target",
        "clients", "requests", "direct p50", "proxy p50", "added p50", "direct p99", "proxy p99", "direct/s", "proxy/s"
    );
    for r in &rows {
        let added = r.proxy.p50 - r.direct.p50;
        println!(
            "{:<8} {:>9} {:>11} {:>11} {:>11} {:>11} {:>11} {:>9.0} {:>9.0}  {} (added p50 <= {TARGET_ADDED_MS} ms)",
            r.clients,
            r.direct.n,
            ms(r.direct.p50),
            ms(r.proxy.p50),
            ms(added),
            ms(r.direct.p99),
            ms(r.proxy.p99),
            r.direct.rate,
            r.proxy.rate,
            verdict(added <= TARGET_ADDED_MS)
        );
        if r.direct.errors + r.proxy.errors > 0 {
            println!(
                "         errors: direct {} proxied {} (first: {})",
                r.direct.errors, r.proxy.errors, r.first_error
            );
        }
    }
    println!(
        "proxy RSS: idle {:.1} MiB, after {} proxied requests {:.1} MiB (peak {:.1} MiB)  {} (<= {TARGET_RSS_MIB} MiB)",
        mib(idle.rss_kb),
        proxied_sent,
        mib(after.rss_kb),
        mib(after.hwm_kb),
        verdict(mib(after.rss_kb) <= TARGET_RSS_MIB)
    );
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!();
    println!("CPU time per request in µs (bench client, proxy and Anvil share {cores} cores; from /proc/<pid>/stat)");
    println!("{:<8} {:<8} {:>7} {:>7} {:>7} {:>7}", "clients", "target", "client", "proxy", "anvil", "total");
    for r in &rows {
        for (name, s) in [("direct", &r.direct), ("proxied", &r.proxy)] {
            let [c, p, a] = s.cpu_us;
            println!("{:<8} {:<8} {c:>7.1} {p:>7.1} {a:>7.1} {:>7.1}", r.clients, name, c + p + a);
        }
    }
    if LEVELS.iter().any(|&(clients, _)| clients > cores) {
        println!(
            "note: with more clients than cores the three processes saturate the CPU, so latency there is \
             about clients / cores x total CPU per request (queueing), not the proxy's own path length"
        );
    }
    println!("measured in {:.1} s", elapsed.as_secs_f64());
    drop(proxy);
    Ok(())
}

fn ms(x: f64) -> String {
    format!("{x:.3} ms")
}

/// Summary of one target at one concurrency.
struct Stats {
    n: usize,
    p50: f64,
    p99: f64,
    rate: f64,
    errors: usize,
    /// CPU µs per request: this process, the proxy, Anvil.
    cpu_us: [f64; 3],
}

struct Row {
    clients: usize,
    direct: Stats,
    proxy: Stats,
    first_error: String,
}

/// Latencies of one batch.
#[derive(Default)]
struct Batch {
    nanos: Vec<u64>,
    wall: Duration,
    errors: usize,
    first_error: String,
    /// CPU clock ticks spent meanwhile: this process, the proxy, Anvil.
    cpu_ticks: [u64; 3],
}

impl Batch {
    fn absorb(&mut self, other: Batch) {
        self.nanos.extend(other.nanos);
        self.wall += other.wall;
        self.errors += other.errors;
        for (a, b) in self.cpu_ticks.iter_mut().zip(other.cpu_ticks) {
            *a += b;
        }
        if self.first_error.is_empty() {
            self.first_error = other.first_error;
        }
    }

    fn stats(mut self) -> Stats {
        self.nanos.sort_unstable();
        let pct = |p: f64| -> f64 {
            if self.nanos.is_empty() {
                return f64::NAN;
            }
            let i = ((p * self.nanos.len() as f64).ceil() as usize).clamp(1, self.nanos.len()) - 1;
            self.nanos[i] as f64 / 1e6
        };
        let n = self.nanos.len() + self.errors;
        let us_per_tick = 1e6 / clock_ticks_per_sec() as f64;
        let cpu_us = self.cpu_ticks.map(|t| t as f64 * us_per_tick / n.max(1) as f64);
        let rate = n as f64 / self.wall.as_secs_f64();
        Stats { n, p50: pct(0.50), p99: pct(0.99), rate, errors: self.errors, cpu_us }
    }
}

async fn measure_level(
    direct: &Target,
    proxied: &Target,
    clients: usize,
    per_round: usize,
    procs: &Procs,
    proxied_sent: &mut usize,
) -> Result<Row, String> {
    // Separate clients per target, so each client keeps one connection to one server.
    let direct_clients = make_clients(clients)?;
    let proxy_clients = make_clients(clients)?;
    let warmup = if clients == 1 { WARMUP / 4 } else { WARMUP };
    for (t, c) in [(direct, &direct_clients), (proxied, &proxy_clients)] {
        let w = run_batch(t, c, warmup).await?;
        if w.errors > 0 {
            return Err(format!("{} errors during warm-up against {}: {}", w.errors, t.url, w.first_error));
        }
    }
    *proxied_sent += warmup;
    let (mut d, mut p) = (Batch::default(), Batch::default());
    for round in 0..ROUNDS {
        // Alternate which side goes first, so drift hits both alike.
        if round % 2 == 0 {
            d.absorb(procs.metered(run_batch(direct, &direct_clients, per_round)).await?);
            p.absorb(procs.metered(run_batch(proxied, &proxy_clients, per_round)).await?);
        } else {
            p.absorb(procs.metered(run_batch(proxied, &proxy_clients, per_round)).await?);
            d.absorb(procs.metered(run_batch(direct, &direct_clients, per_round)).await?);
        }
        *proxied_sent += per_round;
    }
    let first_error = if d.first_error.is_empty() { p.first_error.clone() } else { d.first_error.clone() };
    Ok(Row { clients, direct: d.stats(), proxy: p.stats(), first_error })
}

/// Sends `total` requests to `target`, split evenly over `clients` concurrent tasks.
async fn run_batch(target: &Target, clients: &[reqwest::Client], total: usize) -> Result<Batch, String> {
    let n = clients.len();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for (i, client) in clients.iter().enumerate() {
        let count = total / n + usize::from(i < total % n);
        let client = client.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut b = Batch { nanos: Vec::with_capacity(count), ..Batch::default() };
            for _ in 0..count {
                let t0 = Instant::now();
                let mut req = client.post(&target.url).header("content-type", "application/json").body(target.body);
                for (k, v) in &target.headers {
                    req = req.header(*k, v);
                }
                let outcome = match req.send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        match resp.bytes().await {
                            Ok(body) if status.is_success() && contains_bytes(&body, b"\"result\"") => Ok(()),
                            Ok(body) => Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body))),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                };
                let dt = t0.elapsed();
                match outcome {
                    Ok(()) => b.nanos.push(dt.as_nanos() as u64),
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

/// The processes whose CPU time is metered.
struct Procs {
    proxy: u32,
    anvil: Option<u32>,
}

impl Procs {
    fn ticks(&self) -> [u64; 3] {
        let of = |pid: Option<String>| pid.and_then(|p| cpu_ticks(&p)).unwrap_or(0);
        [of(Some("self".into())), of(Some(self.proxy.to_string())), of(self.anvil.map(|p| p.to_string()))]
    }

    /// Runs `batch`, recording the CPU time each process spent meanwhile.
    async fn metered(&self, batch: impl Future<Output = Result<Batch, String>>) -> Result<Batch, String> {
        let before = self.ticks();
        let mut b = batch.await?;
        let after = self.ticks();
        for i in 0..3 {
            b.cpu_ticks[i] = after[i].saturating_sub(before[i]);
        }
        Ok(b)
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name, starting with field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The Anvil this process started: a child named `anvil`.
fn find_anvil() -> Option<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let (name, rest) = (stat.get(stat.find('(')? + 1..stat.rfind(')')?)?, &stat[stat.rfind(')')? + 1..]);
        let ppid = rest.split_whitespace().nth(1)?;
        (name == "anvil" && ppid == me).then_some(pid)
    })
}

struct Mem {
    rss_kb: u64,
    hwm_kb: u64,
}

/// VmRSS and VmHWM of `pid`, in kB.
fn read_rss(pid: u32) -> Result<Mem, String> {
    let status = ProcStatus::read(pid)?;
    Ok(Mem { rss_kb: status.field("VmRSS:")?, hwm_kb: status.field("VmHWM:")? })
}

/// "Anvil 1.7.1", from `anvil --version`.
fn anvil_version() -> String {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let out = Command::new(anvil_bin()).arg("--version").output().ok();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        let version = text.split_whitespace().skip_while(|w| *w != "Version:").nth(1);
        format!("Anvil {}", version.unwrap_or("(unknown version)"))
    })
    .clone()
}
