//! Helpers the benchmarks share: the release proxy binary, readers for child output, the HTTP
//! clients that load the proxy, and how results are printed.

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{TEST_PASSPHRASE, workspace_root};

/// The release `assegai` binary: `$ASSEGAI_BIN`, else built now (benchmarks must not measure a
/// debug build). `bench` names the caller in the progress line.
pub fn release_bin(bench: &str) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ASSEGAI_BIN") {
        return Ok(PathBuf::from(p));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("{bench}: building the release assegai binary (set ASSEGAI_BIN to skip)");
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "assegai", "--bin", "assegai"])
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err("`cargo build --release -p assegai` failed".into());
    }
    // A benchmark runs from <target>/release/deps/; the binary lands in <target>/release/.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let target_dir = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(Path::to_owned)
        .unwrap_or_else(|| workspace_root().join("target"));
    let bin = target_dir.join("release").join("assegai");
    if bin.exists() { Ok(bin) } else { Err(format!("{} not found after building", bin.display())) }
}

/// Sends each line of `stream` (with its newline) to `tx`, on a thread, until it closes.
pub fn drain(stream: impl Read + Send + 'static, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line + "\n");
        }
    });
}

/// `CLK_TCK`, the unit of utime/stime in /proc.
pub fn clock_ticks_per_sec() -> u64 {
    static T: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// `n` HTTP/1 clients, each keeping one keep-alive connection.
pub fn make_clients(n: usize) -> Result<Vec<reqwest::Client>, String> {
    (0..n)
        .map(|_| {
            reqwest::Client::builder()
                .no_proxy()
                .http1_only()
                .tcp_nodelay(true)
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| format!("cannot build an HTTP client: {e}"))
        })
        .collect()
}

/// `PASS` or `MISS` next to a target.
pub fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

/// KiB → MiB.
pub fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// The `p` quantile (0..=1, nearest rank) of `sorted` nanoseconds, in ms; NaN when empty.
pub fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1e6
}

/// `bin ARGS` with `home`, the test passphrase, no colour, no stdin.
pub fn assegai_cmd(bin: &Path, home: &Path, args: &[&str]) -> Command {
    assegai_cmd_on(bin, home, None, args)
}

/// [`assegai_cmd`] on the shared database at `database_url`, when there is one.
pub fn assegai_cmd_on(bin: &Path, home: &Path, database_url: Option<&str>, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args)
        .env("ASSEGAI_HOME", home)
        .env("ASSEGAI_PASSPHRASE", TEST_PASSPHRASE)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    if let Some(url) = database_url {
        c.env(assegai_sdk::env::DATABASE_URL, url);
    }
    c
}

/// `assegai agents add NAME [--manifest FILE] --json` with `bin`; returns (id, token).
pub fn add_agent(bin: &Path, home: &Path, name: &str, manifest: Option<&Value>) -> Result<(String, String), String> {
    add_agent_on(bin, home, None, name, manifest)
}

/// [`add_agent`] on the shared database at `database_url`, when there is one.
pub fn add_agent_on(
    bin: &Path,
    home: &Path,
    database_url: Option<&str>,
    name: &str,
    manifest: Option<&Value>,
) -> Result<(String, String), String> {
    let path = home.join(format!("{name}.assegai.json"));
    let mut args = vec!["agents", "add", name, "--json"];
    if let Some(m) = manifest {
        std::fs::write(&path, m.to_string()).map_err(|e| format!("write {}: {e}", path.display()))?;
        args.extend(["--manifest", path.to_str().ok_or("temp path is not UTF-8")?]);
    }
    let out = assegai_cmd_on(bin, home, database_url, &args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!("agents add {name} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("agents add --json: {e}"))?;
    match (v["id"].as_str(), v["token"].as_str()) {
        (Some(id), Some(token)) => Ok((id.to_owned(), token.to_owned())),
        _ => Err(format!("agents add --json printed no id/token: {v}")),
    }
}

/// `assegai proxy --listen 127.0.0.1:0` started with `bin`, killed on drop. Its first few
/// warnings and errors are shown on stderr, prefixed with the benchmark's name.
pub struct ProxyChild {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl ProxyChild {
    /// Starts the proxy and waits (up to 30 s) until it says where it listens.
    pub fn start(bin: &Path, home: &Path, bench: &'static str) -> Result<Self, String> {
        Self::start_on(bin, home, None, bench)
    }

    /// [`ProxyChild::start`] on the shared database at `database_url`, when there is one.
    pub fn start_on(bin: &Path, home: &Path, database_url: Option<&str>, bench: &'static str) -> Result<Self, String> {
        let mut child = assegai_cmd_on(bin, home, database_url, &["proxy", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {} proxy: {e}", bin.display()))?;
        let (tx, rx) = mpsc::channel();
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err("no pipes to the proxy".into());
        };
        drain(stdout, tx.clone());
        drain(stderr, tx);
        let mut proxy = ProxyChild { child, url: String::new() };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = String::new();
        while proxy.url.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).map_err(|_| format!("the proxy did not say where it listens:\n{seen}"))?;
            if let Some(i) = line.find("listening on ") {
                let rest = &line[i + "listening on ".len()..];
                if let Some(url) = rest.split_whitespace().next() {
                    proxy.url = url.to_owned();
                }
            }
            seen.push_str(&line);
        }
        // Keep reading its output so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut shown = 0;
            while let Ok(line) = rx.recv() {
                if shown < 5 && (line.contains("WARN") || line.contains("ERROR")) {
                    shown += 1;
                    eprint!("{bench}: proxy said: {line}");
                }
            }
        });
        Ok(proxy)
    }

    /// The proxy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ProxyChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/proc/PID/status` of a process, read once.
pub struct ProcStatus {
    pid: u32,
    text: String,
}

impl ProcStatus {
    /// Reads it now.
    pub fn read(pid: u32) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc/{pid}/status: {e}"))?;
        Ok(ProcStatus { pid, text })
    }

    /// A numeric field (`"VmRSS:"`, `"Threads:"`), in kB for the memory ones.
    pub fn field(&self, name: &str) -> Result<u64, String> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| format!("no {name} in /proc/{}/status", self.pid))
    }
}
