//! Helpers the benchmarks share: the release proxy binary, readers for child output, the HTTP
//! clients that load the proxy, and how results are printed.

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::Command,
    sync::mpsc,
    time::Duration,
};

use crate::workspace_root;

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
