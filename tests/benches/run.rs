//! What `assegai new` and `assegai run` cost a person: the wall time of `new`; how much later an
//! agent's first line appears under `assegai run DIR --no-prompt` than when the same agent is
//! started directly (a `command` agent, and the Rust template with its build up to date, which
//! includes cargo's no-op check); and the resident memory of an idle `assegai run` that hosts the
//! proxy. Diagnostic rows say where the time goes (process start, key derivation, local-chain
//! check, an already running proxy).
//!
//! `cargo bench -p assegai-e2e --bench run`. Uses `$ASSEGAI_BIN` if set, else builds the release
//! binary; starts a real Anvil; every measurement gets a fresh temp `ASSEGAI_HOME` (with
//! `ASSEGAI_PASSPHRASE`, as `assegai_cmd` sets it). The Rust template is built once into
//! `<target>/scaffold` (shared with tests/tests/run.rs; the first build may take minutes). Only
//! loopback traffic; bounded in count; prints numbers and targets (PASS/MISS) but never fails.
//! Without `--bench` (e.g. `cargo test --benches`) it does nothing.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use assegai_e2e::{
    Anvil, TEST_PASSPHRASE,
    bench::{ProcStatus, ProxyChild, assegai_cmd, drain, mib, percentile_ms, release_bin, verdict},
    workspace_root,
};
use serde_json::json;

/// `assegai new` runs (alternating the rust and node templates), after one warm-up.
const NEW_RUNS: usize = 30;
/// Alternating direct/`assegai run` rounds per command-agent variant.
const RUN_ROUNDS: usize = 20;
/// Alternating direct/`assegai run` rounds for the Rust template.
const RUST_ROUNDS: usize = 10;
/// Timed no-op `cargo build --release` runs in the Rust agent's directory.
const CARGO_NOOP_RUNS: usize = 10;
/// In-process key derivations timed (Argon2id, the key store's parameters).
const KDF_RUNS: usize = 5;
/// How long the agent idles before memory is read.
const IDLE: Duration = Duration::from_secs(3);
/// Longest wait for the first build of the Rust template.
const FIRST_BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

const TARGET_NEW_MS: f64 = 100.0;
const TARGET_RUN_ADDED_MS: f64 = 300.0;
const TARGET_RSS_MIB: f64 = 40.0;

/// What the command agents print once they run.
const MARKER: &str = "bench-marker-ready";
/// The `PATH` `assegai run` gives an agent; the direct runs get the same.
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// The Rust agent's name (and so its package and binary name).
const RUST_AGENT: &str = "runbench";
/// The Rust template's first line starts with this (printed before any network call).
const RUST_FIRST_LINE: &str = "[info] environment: ";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("run: run with `cargo bench -p assegai-e2e --bench run`; skipped");
        return;
    }
    match std::panic::catch_unwind(run) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => println!("run benchmark skipped: {e}"),
        Err(_) => println!("run benchmark skipped: it panicked (see above)"),
    }
}

fn run() -> Result<(), String> {
    let bin = release_bin("run")?;
    let started = Instant::now();
    let anvil = Anvil::start();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("assegai binary: {}", bin.display());
    println!("{cores} cores, shared with whatever else runs here (builds, tests): expect noise");
    let mut targets: Vec<(String, String, bool)> = Vec::new();

    // Process start, the floor under every command.
    let home = tempdir()?;
    let version = Samples::collect(NEW_RUNS, || {
        let t0 = Instant::now();
        let out = assegai_cmd(&bin, home.path(), &["--version"]).output().map_err(|e| e.to_string())?;
        ensure_ok(&out.status, "assegai --version", &out.stderr)?;
        Ok(t0.elapsed())
    })?;

    // 1. `assegai new`.
    let new = measure_new(&bin)?;
    println!();
    println!("assegai new: {NEW_RUNS} runs, templates alternating, each into a fresh directory");
    println!("{:<22} {:>9} {:>9} {:>9}", "", "p50", "p90", "max");
    for (label, s) in [
        ("assegai --version", &version),
        ("new (both)", &new.all),
        ("new --template rust", &new.rust),
        ("new --template node", &new.node),
    ] {
        println!("{label:<22} {:>9} {:>9} {:>9}", ms(s.p50()), ms(s.p90()), ms(s.max()));
    }
    targets.push((
        format!("assegai new p90 < {TARGET_NEW_MS} ms"),
        format!("p90 {} (max {})", ms(new.all.p90()), ms(new.all.max())),
        new.all.p90() < TARGET_NEW_MS,
    ));

    // 2a. `assegai run` of a command agent, against starting it directly.
    let variants = [
        Variant { label: "local chain (Anvil answers)", local_chain: true, ..Variant::DEFAULT },
        Variant { label: "no local chain in manifest", ..Variant::DEFAULT },
        Variant { label: "local chain, no PASSPHRASE", local_chain: true, passphrase: false, ..Variant::DEFAULT },
        Variant { label: "local chain, keys.enc exists", local_chain: true, key_stored: true, ..Variant::DEFAULT },
        Variant { label: "local chain, proxy running", local_chain: true, proxy_running: true, ..Variant::DEFAULT },
        Variant { label: "local chain, --no-sandbox", local_chain: true, sandbox: false, ..Variant::DEFAULT },
    ];
    let mut rows = Vec::new();
    for v in &variants {
        rows.push((v, command_overhead(&bin, &anvil.url, v)?));
    }
    println!();
    println!(
        "assegai run, command agent (`/bin/sh agent.sh` printing one line), {RUN_ROUNDS} rounds alternating \
         direct/run; time from spawn to the line on stdout"
    );
    println!(
        "{:<30} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "variant", "direct p50", "run p50", "added p50", "run p90", "exit p50"
    );
    for (v, o) in &rows {
        println!(
            "{:<30} {:>10} {:>10} {:>10} {:>10} {:>10}",
            v.label,
            ms(o.direct.p50()),
            ms(o.run.p50()),
            ms(o.added()),
            ms(o.run.p90()),
            ms(o.exit.p50())
        );
    }
    println!(
        "  (default: ASSEGAI_PASSPHRASE set, no proxy running so `run` hosts one; `exit p50` is until \
         `assegai run` has exited after the agent did)"
    );
    if let (Some((_, on)), Some((_, off))) = (rows.first(), rows.iter().find(|(v, _)| !v.sandbox)) {
        println!(
            "  the sandbox's own cost (trampoline exec + Landlock ruleset): {} at p50",
            ms(on.run.p50() - off.run.p50())
        );
    }
    let headline = &rows[0].1;
    targets.push((
        format!("run adds < {TARGET_RUN_ADDED_MS} ms (command agent)"),
        format!("added p50 {} (run p90 {})", ms(headline.added()), ms(headline.run.p90())),
        headline.added() < TARGET_RUN_ADDED_MS,
    ));

    // Where the time goes: the key store's Argon2id derivation, in this process.
    let kdf = kdf_cost()?;
    println!();
    println!(
        "key store: FileStore::open of a new keys.enc (Argon2id 64 MiB, t=3, p=1) in-process: p50 {} max {} \
         ({KDF_RUNS} runs)",
        ms(kdf.p50()),
        ms(kdf.max())
    );

    // 2b. The Rust template with its build up to date.
    println!();
    match rust_overhead(&bin, &anvil.url) {
        Ok(r) => {
            println!(
                "assegai run, Rust template (`assegai new {RUST_AGENT}`), build up to date, {RUST_ROUNDS} rounds \
                 alternating; time from spawn to its first line"
            );
            println!("first `assegai run` (build + start): {:.1} s", r.first_build.as_secs_f64());
            println!("{:<42} {:>10} {:>10} {:>10}", "", "p50", "p90", "max");
            for (label, s) in [
                ("built binary directly", &r.direct),
                ("assegai run", &r.run),
                ("assegai run, no ASSEGAI_PASSPHRASE", &r.run_no_passphrase),
                ("cargo build --release (no-op) alone", &r.cargo),
            ] {
                println!("{label:<42} {:>10} {:>10} {:>10}", ms(s.p50()), ms(s.p90()), ms(s.max()));
            }
            let added = r.run.p50() - r.direct.p50();
            println!(
                "added p50 {}: cargo's no-op check {} ({:.0}%), the rest {}",
                ms(added),
                ms(r.cargo.p50()),
                100.0 * r.cargo.p50() / added.max(f64::EPSILON),
                ms(added - r.cargo.p50())
            );
            println!(
                "without ASSEGAI_PASSPHRASE (so no Argon2id for a keys.enc that does not exist): added p50 {}",
                ms(r.run_no_passphrase.p50() - r.direct.p50())
            );
            targets.push((
                format!("run adds < {TARGET_RUN_ADDED_MS} ms (Rust, built)"),
                format!("added p50 {} (cargo {})", ms(added), ms(r.cargo.p50())),
                added < TARGET_RUN_ADDED_MS,
            ));
        }
        Err(e) => {
            println!("Rust template not measured: {e}");
            targets.push((format!("run adds < {TARGET_RUN_ADDED_MS} ms (Rust, built)"), "not measured".into(), false));
        }
    }

    // 3. Idle memory.
    let with_pass = idle_rss(&bin, &anvil.url, true)?;
    let without_pass = idle_rss(&bin, &anvil.url, false)?;
    let standalone = standalone_proxy_rss(&bin)?;
    println!();
    println!(
        "idle memory, {} s after the agent's first line (`while :; do sleep 1; done`), from /proc/PID/status",
        IDLE.as_secs()
    );
    println!(
        "{:<36} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10}",
        "process", "VmRSS", "RssAnon", "RssFile", "VmHWM", "threads", "agent RSS"
    );
    for (label, m) in [
        ("assegai run (hosts the proxy)", &with_pass),
        ("  same, no ASSEGAI_PASSPHRASE", &without_pass),
        ("assegai proxy alone (no agent)", &standalone),
    ] {
        println!(
            "{label:<36} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10}",
            mib_s(m.cli.rss_kb),
            mib_s(m.cli.anon_kb),
            mib_s(m.cli.file_kb),
            mib_s(m.cli.hwm_kb),
            m.cli.threads,
            m.agent.as_ref().map_or_else(|| "-".to_owned(), |a| mib_s(a.rss_kb))
        );
    }
    for (label, m) in [("with ASSEGAI_PASSPHRASE", &with_pass), ("without", &without_pass)] {
        if let Some(stop) = &m.stop {
            println!("SIGINT ({label}): {stop}");
        }
    }
    targets.push((
        format!("idle CLI+proxy RSS <= {TARGET_RSS_MIB} MiB"),
        format!("{} (peak {})", mib_s(with_pass.cli.rss_kb), mib_s(with_pass.cli.hwm_kb)),
        mib(with_pass.cli.rss_kb) <= TARGET_RSS_MIB,
    ));

    println!();
    println!("{:<40} {:<40} verdict", "target", "measured");
    for (target, measured, ok) in &targets {
        println!("{target:<40} {measured:<40} {}", verdict(*ok));
    }
    println!("measured in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Durations, in nanoseconds.
#[derive(Default)]
struct Samples(Vec<u64>);

impl Samples {
    /// Runs `f` `n` times, after one warm-up run that is not kept.
    fn collect(n: usize, mut f: impl FnMut() -> Result<Duration, String>) -> Result<Self, String> {
        f()?;
        let mut s = Samples::default();
        for _ in 0..n {
            s.push(f()?);
        }
        Ok(s)
    }

    fn push(&mut self, d: Duration) {
        self.0.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.0.sort_unstable();
    }

    fn p50(&self) -> f64 {
        percentile_ms(&self.0, 0.50)
    }

    fn p90(&self) -> f64 {
        percentile_ms(&self.0, 0.90)
    }

    fn max(&self) -> f64 {
        percentile_ms(&self.0, 1.0)
    }
}

fn ms(x: f64) -> String {
    format!("{x:.1} ms")
}

fn mib_s(kb: u64) -> String {
    format!("{:.1} MiB", mib(kb))
}

fn tempdir() -> Result<tempfile::TempDir, String> {
    tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))
}

fn ensure_ok(status: &ExitStatus, what: &str, stderr: &[u8]) -> Result<(), String> {
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status}): {}", String::from_utf8_lossy(stderr)))
    }
}

fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str().ok_or_else(|| format!("{} is not UTF-8", p.display()))
}

/// A fresh home whose `config.toml` points the local chain at `anvil_url`.
fn home_with_chain(anvil_url: &str) -> Result<tempfile::TempDir, String> {
    let home = tempdir()?;
    std::fs::write(home.path().join("config.toml"), format!("local_rpc_url = \"{anvil_url}\"\n"))
        .map_err(|e| format!("write config.toml: {e}"))?;
    Ok(home)
}

/// A `command` agent in `home/NAME`: `/bin/sh agent.sh` running `script`.
fn shell_agent(home: &Path, name: &str, script: &str, local_chain: bool) -> Result<PathBuf, String> {
    let dir = home.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    std::fs::write(dir.join("agent.sh"), script).map_err(|e| format!("write agent.sh: {e}"))?;
    let chains: &[&str] = if local_chain { &["eip155:31337"] } else { &[] };
    let manifest = json!({
        "name": name, "runtime": "command", "command": ["/bin/sh", "agent.sh"],
        "permissions": {"chains": chains},
    });
    std::fs::write(dir.join("assegai.json"), manifest.to_string()).map_err(|e| format!("write assegai.json: {e}"))?;
    Ok(dir)
}

/// A started process whose stdout and stderr lines arrive on one channel. Dropping it stops it:
/// SIGINT first (so `assegai run` stops its agent, which lives in its own process group), then
/// SIGKILL after 10 s.
struct Proc {
    child: Child,
    rx: mpsc::Receiver<String>,
    seen: String,
    what: String,
}

impl Proc {
    fn spawn(mut cmd: Command, what: impl Into<String>) -> Result<Self, String> {
        let what = what.into();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        let (tx, rx) = mpsc::channel();
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(format!("no pipes to {what}"));
        };
        drain(stdout, tx.clone());
        drain(stderr, tx);
        Ok(Proc { child, rx, seen: String::new(), what })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line containing `needle`; returns the line.
    fn wait_line(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    if line.contains(needle) {
                        return Ok(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!("{} printed no `{needle}` within {timeout:?}:\n{}", self.what, self.tail()));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Err(format!("{} ended ({status}) without `{needle}`:\n{}", self.what, self.tail()));
                }
            }
        }
    }

    /// Waits up to `timeout` for the exit, reading output meanwhile.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            if let Ok(line) = self.rx.recv_timeout(Duration::from_millis(2)) {
                self.seen.push_str(&line);
            }
        }
    }

    /// Everything read after the process ended (up to 1 s for the last lines).
    fn rest(&mut self) -> &str {
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Ok(line) = self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            self.seen.push_str(&line);
        }
        &self.seen
    }

    fn signal(&self, name: &str) {
        let _ = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status();
    }

    fn tail(&self) -> String {
        let lines: Vec<&str> = self.seen.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal("INT");
            if self.wait_exit(Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// `assegai new` wall times.
struct NewTimes {
    all: Samples,
    rust: Samples,
    node: Samples,
}

fn measure_new(bin: &Path) -> Result<NewTimes, String> {
    let home = tempdir()?;
    let work = tempdir()?;
    let mut times = NewTimes { all: Samples::default(), rust: Samples::default(), node: Samples::default() };
    // Index 0 is the warm-up.
    for i in 0..=NEW_RUNS {
        let template = if i % 2 == 0 { "rust" } else { "node" };
        let name = format!("agent{i}");
        let dir = work.path().join(&name);
        let t0 = Instant::now();
        let out = assegai_cmd(bin, home.path(), &["new", &name, "--template", template, "--dir", path_str(&dir)?])
            .output()
            .map_err(|e| format!("cannot run assegai new: {e}"))?;
        let dt = t0.elapsed();
        ensure_ok(&out.status, "assegai new", &out.stderr)?;
        if !dir.join("assegai.json").is_file() {
            return Err(format!("assegai new wrote no {}", dir.join("assegai.json").display()));
        }
        if i == 0 {
            continue;
        }
        times.all.push(dt);
        if template == "rust" { times.rust.push(dt) } else { times.node.push(dt) }
    }
    Ok(times)
}

/// One way of running the command agent.
struct Variant {
    label: &'static str,
    /// The manifest lists eip155:31337 (so `run` asks Anvil for its chain id).
    local_chain: bool,
    /// `ASSEGAI_PASSPHRASE` is set (so the embedded proxy derives a key for `keys.enc`).
    passphrase: bool,
    /// An `assegai proxy` runs already (so `run` neither opens the key store nor starts one).
    proxy_running: bool,
    /// An AI key was stored first (`assegai keys set openai --stdin`), so `keys.enc` exists.
    key_stored: bool,
    /// Landlock confinement on (the default); off shows what the sandbox itself costs.
    sandbox: bool,
}

impl Variant {
    const DEFAULT: Variant = Variant {
        label: "",
        local_chain: false,
        passphrase: true,
        proxy_running: false,
        key_stored: false,
        sandbox: true,
    };
}

struct Overhead {
    /// Spawn of `/bin/sh agent.sh` to its line.
    direct: Samples,
    /// Spawn of `assegai run` to the agent's prefixed line.
    run: Samples,
    /// Spawn of `assegai run` to its exit.
    exit: Samples,
}

impl Overhead {
    fn added(&self) -> f64 {
        self.run.p50() - self.direct.p50()
    }
}

fn command_overhead(bin: &Path, anvil_url: &str, v: &Variant) -> Result<Overhead, String> {
    let home = home_with_chain(anvil_url)?;
    let name = "cmdbench";
    let dir = shell_agent(home.path(), name, &format!("echo {MARKER}\n"), v.local_chain)?;
    if v.key_stored {
        store_key(bin, home.path())?;
    }
    let _proxy = if v.proxy_running { Some(ProxyChild::start(bin, home.path(), "run")?) } else { None };
    let prefixed = format!("{name} │ {MARKER}");
    let direct = || -> Result<Duration, String> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("agent.sh").current_dir(&dir).env_clear().env("PATH", SYSTEM_PATH);
        let t0 = Instant::now();
        let mut p = Proc::spawn(cmd, "/bin/sh agent.sh")?;
        p.wait_line(MARKER, Duration::from_secs(10))?;
        let dt = t0.elapsed();
        p.wait_exit(Duration::from_secs(10));
        Ok(dt)
    };
    let via_run = || -> Result<(Duration, Duration), String> {
        let mut args = vec!["run", path_str(&dir)?, "--no-prompt"];
        if !v.sandbox {
            args.push("--no-sandbox");
        }
        let mut cmd = assegai_cmd(bin, home.path(), &args);
        if !v.passphrase {
            cmd.env_remove("ASSEGAI_PASSPHRASE");
        }
        let t0 = Instant::now();
        let mut p = Proc::spawn(cmd, "assegai run")?;
        p.wait_line(&prefixed, Duration::from_secs(30))?;
        let to_line = t0.elapsed();
        let status = p.wait_exit(Duration::from_secs(30)).ok_or("assegai run did not exit after its agent did")?;
        let to_exit = t0.elapsed();
        if !status.success() {
            return Err(format!("assegai run failed ({status}):\n{}", p.rest()));
        }
        Ok((to_line, to_exit))
    };
    direct()?;
    via_run()?;
    let mut o = Overhead { direct: Samples::default(), run: Samples::default(), exit: Samples::default() };
    for round in 0..RUN_ROUNDS {
        // Alternate which goes first, so drift hits both alike.
        if round % 2 == 0 {
            o.direct.push(direct()?);
        }
        let (line, exit) = via_run()?;
        o.run.push(line);
        o.exit.push(exit);
        if round % 2 == 1 {
            o.direct.push(direct()?);
        }
    }
    Ok(o)
}

/// `assegai keys set openai --stdin` with a made-up key.
fn store_key(bin: &Path, home: &Path) -> Result<(), String> {
    use std::io::Write;
    let mut child = assegai_cmd(bin, home, &["keys", "set", "openai", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run assegai keys set: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no pipe to assegai keys set")?;
    stdin.write_all(b"sk-bench-0123456789abcdef\n").map_err(|e| format!("writing the key: {e}"))?;
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| format!("assegai keys set: {e}"))?;
    ensure_ok(&out.status, "assegai keys set openai --stdin", &out.stderr)?;
    if home.join("keys.enc").is_file() { Ok(()) } else { Err("assegai keys set wrote no keys.enc".into()) }
}

/// The key store's key derivation for a new `keys.enc`, timed in this process.
fn kdf_cost() -> Result<Samples, String> {
    let dir = tempdir()?;
    let file = dir.path().join("keys.enc");
    Samples::collect(KDF_RUNS, || {
        let t0 = Instant::now();
        let store = assegai_proxy::keys::FileStore::open(&file, TEST_PASSPHRASE.to_owned().into())
            .map_err(|e| format!("FileStore::open: {e}"))?;
        let dt = t0.elapsed();
        drop(store);
        Ok(dt)
    })
}

struct RustOverhead {
    first_build: Duration,
    direct: Samples,
    run: Samples,
    /// `assegai run` without `ASSEGAI_PASSPHRASE`: no key derivation while no `keys.enc` exists.
    run_no_passphrase: Samples,
    cargo: Samples,
}

fn rust_overhead(bin: &Path, anvil_url: &str) -> Result<RustOverhead, String> {
    let home = home_with_chain(anvil_url)?;
    let work = tempdir()?;
    let dir = work.path().join(RUST_AGENT);
    let target = workspace_root().join("target").join("scaffold");
    let out = assegai_cmd(bin, home.path(), &["new", RUST_AGENT, "--template", "rust", "--dir", path_str(&dir)?])
        .output()
        .map_err(|e| format!("cannot run assegai new: {e}"))?;
    ensure_ok(&out.status, "assegai new --template rust", &out.stderr)?;
    let prefixed = format!("{RUST_AGENT} │ {RUST_FIRST_LINE}");
    let via_run = |timeout: Duration, passphrase: bool| -> Result<Duration, String> {
        let mut cmd = assegai_cmd(bin, home.path(), &["run", path_str(&dir)?, "--no-prompt"]);
        cmd.env("CARGO_TARGET_DIR", &target);
        if !passphrase {
            cmd.env_remove("ASSEGAI_PASSPHRASE");
        }
        let t0 = Instant::now();
        let mut p = Proc::spawn(cmd, "assegai run (Rust agent)")?;
        p.wait_line(&prefixed, timeout)?;
        let dt = t0.elapsed();
        p.signal("INT");
        match p.wait_exit(Duration::from_secs(15)) {
            Some(s) if s.success() => Ok(dt),
            Some(s) => Err(format!("assegai run ended with {s} after SIGINT:\n{}", p.rest())),
            None => Err("assegai run did not stop within 15 s of SIGINT".into()),
        }
    };
    eprintln!("run: building the Rust template into {} (may take minutes)", target.display());
    let first_build = via_run(FIRST_BUILD_TIMEOUT, true)?;
    let exe = target.join("release").join(RUST_AGENT);
    if !exe.is_file() {
        return Err(format!("no {} after the first run", exe.display()));
    }
    let workspace = home.path().join("direct-workspace");
    std::fs::create_dir_all(&workspace).map_err(|e| format!("create {}: {e}", workspace.display()))?;
    let direct = || -> Result<Duration, String> {
        let mut cmd = Command::new(&exe);
        // What `assegai run` gives it; nothing listens on port 9, and the first line comes before
        // any call to the proxy.
        cmd.current_dir(&dir)
            .env_clear()
            .env("PATH", SYSTEM_PATH)
            .env("HOME", &workspace)
            .env("ASSEGAI_WORKSPACE", &workspace)
            .env("ASSEGAI_API_PROXY", "http://127.0.0.1:9")
            .env("ASSEGAI_AGENT_ID", "ag_bench")
            .env("ASSEGAI_AGENT_TOKEN", "asg_bench");
        let t0 = Instant::now();
        let mut p = Proc::spawn(cmd, exe.display().to_string())?;
        p.wait_line(RUST_FIRST_LINE, Duration::from_secs(10))?;
        let dt = t0.elapsed();
        let _ = p.child.kill();
        Ok(dt)
    };
    let cargo = Samples::collect(CARGO_NOOP_RUNS, || {
        // As `assegai run` does it: `cargo` from PATH, in the agent's directory.
        let t0 = Instant::now();
        let out = Command::new("cargo")
            .args(["build", "--release", "--message-format=json-render-diagnostics"])
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &target)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        let dt = t0.elapsed();
        ensure_ok(&out.status, "cargo build --release", &out.stderr)?;
        Ok(dt)
    })?;
    direct()?;
    let mut r = RustOverhead {
        first_build,
        direct: Samples::default(),
        run: Samples::default(),
        run_no_passphrase: Samples::default(),
        cargo,
    };
    for round in 0..RUST_ROUNDS {
        if round % 2 == 0 {
            r.direct.push(direct()?);
        }
        r.run.push(via_run(Duration::from_secs(60), true)?);
        r.run_no_passphrase.push(via_run(Duration::from_secs(60), false)?);
        if round % 2 == 1 {
            r.direct.push(direct()?);
        }
    }
    Ok(r)
}

/// Memory figures of one process, from /proc/PID/status (kB).
#[derive(Default)]
struct Mem {
    rss_kb: u64,
    anon_kb: u64,
    file_kb: u64,
    hwm_kb: u64,
    threads: u64,
}

fn read_mem(pid: u32) -> Result<Mem, String> {
    let status = ProcStatus::read(pid)?;
    let field = |name: &str| status.field(name);
    Ok(Mem {
        rss_kb: field("VmRSS:")?,
        anon_kb: field("RssAnon:")?,
        file_kb: field("RssFile:")?,
        hwm_kb: field("VmHWM:")?,
        threads: field("Threads:")?,
    })
}

/// The children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid: u32 = stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

struct Idle {
    cli: Mem,
    agent: Option<Mem>,
    /// How SIGINT went.
    stop: Option<String>,
}

fn idle_rss(bin: &Path, anvil_url: &str, passphrase: bool) -> Result<Idle, String> {
    let home = home_with_chain(anvil_url)?;
    let name = "idlebench";
    let dir = shell_agent(home.path(), name, &format!("echo {MARKER}\nwhile :; do sleep 1; done\n"), true)?;
    let mut cmd = assegai_cmd(bin, home.path(), &["run", path_str(&dir)?, "--no-prompt"]);
    if !passphrase {
        cmd.env_remove("ASSEGAI_PASSPHRASE");
    }
    let mut p = Proc::spawn(cmd, "assegai run (idle agent)")?;
    p.wait_line(&format!("{name} │ {MARKER}"), Duration::from_secs(30))?;
    std::thread::sleep(IDLE);
    let cli = read_mem(p.pid())?;
    let agent_pid = children(p.pid()).into_iter().next();
    let agent = agent_pid.and_then(|pid| read_mem(pid).ok());
    let t0 = Instant::now();
    p.signal("INT");
    let stop = match p.wait_exit(Duration::from_secs(10)) {
        Some(status) => {
            let took = t0.elapsed();
            let out = p.rest();
            let agent_gone = agent_pid.is_none_or(|pid| !Path::new(&format!("/proc/{pid}")).exists());
            format!(
                "assegai run exited {status} after {}; said \"Stopping\": {}; agent process gone: {agent_gone}",
                ms(took.as_secs_f64() * 1e3),
                out.contains("Stopping")
            )
        }
        None => "assegai run did NOT exit within 10 s of SIGINT".to_owned(),
    };
    Ok(Idle { cli, agent, stop: Some(stop) })
}

fn standalone_proxy_rss(bin: &Path) -> Result<Idle, String> {
    let home = tempdir()?;
    let proxy = ProxyChild::start(bin, home.path(), "run")?;
    std::thread::sleep(IDLE);
    Ok(Idle { cli: read_mem(proxy.pid())?, agent: None, stop: None })
}
