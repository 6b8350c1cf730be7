//! Running an agent as a local process: building it, the environment it gets (nothing of the
//! user's but a minimal `PATH`, `LANG` and `TERM`), its memory limit, its output prefixed with its
//! name, and stopping it (SIGTERM, then SIGKILL after a grace period).

use std::{
    collections::BTreeMap,
    ffi::OsString,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};
use assegai_proxy::{
    manifest::{Manifest, Runtime},
    sanitize::neutralize,
};
use assegai_sdk::env;
use console::style;
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
};

use crate::printer::{AgentStream, Printer};

/// Directories searched for programs inside the agent's minimal `PATH`.
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What to start, once built.
#[derive(Debug, Clone)]
pub struct Program {
    /// The executable (absolute).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
}

/// What an agent is told, and nothing else.
#[derive(Debug, Clone)]
pub struct AgentEnv {
    /// The proxy's URL as the agent reaches it.
    pub proxy_url: String,
    /// The agent's id.
    pub agent_id: String,
    /// The agent's token.
    pub token: String,
    /// The agent's private workspace (also its `HOME`).
    pub workspace: PathBuf,
}

impl AgentEnv {
    /// The whole environment of the agent's process. `program` is where the interpreter or binary
    /// lives: its directory leads the minimal `PATH` so a Node installed outside the system
    /// directories still runs.
    pub fn vars(&self, program: &Path) -> BTreeMap<String, OsString> {
        let mut path = OsString::new();
        if let Some(dir) = program.parent().filter(|d| !SYSTEM_PATH.split(':').any(|s| Path::new(s) == *d)) {
            path.push(dir.as_os_str());
            path.push(":");
        }
        path.push(SYSTEM_PATH);
        let mut vars = BTreeMap::from([
            (env::API_PROXY.to_owned(), OsString::from(&self.proxy_url)),
            (env::AGENT_ID.to_owned(), OsString::from(&self.agent_id)),
            (env::AGENT_TOKEN.to_owned(), OsString::from(&self.token)),
            (env::WORKSPACE.to_owned(), self.workspace.clone().into_os_string()),
            ("HOME".to_owned(), self.workspace.clone().into_os_string()),
            ("PATH".to_owned(), path),
        ]);
        if let Some(v) = std::env::var_os("TERM") {
            vars.insert("TERM".to_owned(), v);
        }
        // Always a locale, and a UTF-8 one when the user's shell names none: without it Python
        // switches its own locale and adds an LC_CTYPE nobody gave the agent.
        vars.insert("LANG".to_owned(), std::env::var_os("LANG").unwrap_or_else(|| "C.UTF-8".into()));
        vars
    }
}

/// Finds `name` on the user's `PATH` (before the agent's environment replaces it).
pub fn find_program(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
    })
}

/// The interpreter behind `python3`. A version manager's shim (pyenv's, say) would otherwise stand
/// between `assegai run` and the agent and hand it variables of its own (`PYENV_ROOT`, …), where it
/// must see only what `run` gives it.
async fn real_interpreter(python: PathBuf) -> PathBuf {
    let asked = Command::new(&python)
        .args(["-c", "import sys; print(sys.executable)"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match tokio::time::timeout(Duration::from_secs(10), asked).await {
        Ok(Ok(out)) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let real = PathBuf::from(text.trim());
            if real.is_absolute() && real.is_file() { real } else { python }
        }
        _ => python,
    }
}

/// Builds the agent if its runtime needs it (behind a spinner; the build's output is shown only
/// when it fails) and returns what to start.
pub async fn build(dir: &Path, manifest: &Manifest, printer: Printer) -> anyhow::Result<Program> {
    match manifest.runtime.unwrap_or(Runtime::Command) {
        Runtime::Rust => build_rust(dir, printer).await,
        Runtime::Node => {
            let node = find_program("node").context("`node` is not on PATH; install Node.js 18 or newer")?;
            if needs_npm_install(dir)? {
                let npm = find_program("npm").context("`npm` is not on PATH; install Node.js with npm")?;
                let mut cmd = Command::new(npm);
                cmd.args(["install", "--no-audit", "--no-fund"]).current_dir(dir);
                run_build(cmd, "Installing the agent's npm packages…", printer).await?;
            }
            let entry = manifest.entrypoint.clone().map_or_else(|| node_main(dir), Ok)?;
            Ok(Program { program: node, args: vec![entry.into()] })
        }
        Runtime::Python => {
            let python = find_program("python3").context("`python3` is not on PATH; install Python 3")?;
            let python = real_interpreter(python).await;
            let entry = manifest.entrypoint.clone().unwrap_or_else(|| "main.py".into());
            // Unbuffered: a piped stdout would otherwise hold the agent's prints back for minutes.
            Ok(Program { program: python, args: vec!["-u".into(), entry.into()] })
        }
        Runtime::Command => {
            let Some((first, rest)) = manifest.command.as_deref().and_then(<[String]>::split_first) else {
                bail!(
                    "{}: `command` is missing: with runtime \"command\" (or no runtime), give the command line, e.g. \"command\": [\"./agent\"]",
                    dir.join("assegai.json").display()
                );
            };
            let program = if first.contains('/') {
                dir.join(first)
            } else {
                find_program(first).with_context(|| format!("`{first}` (the manifest's `command`) is not on PATH"))?
            };
            Ok(Program { program, args: rest.iter().map(OsString::from).collect() })
        }
    }
}

async fn build_rust(dir: &Path, printer: Printer) -> anyhow::Result<Program> {
    let cargo = find_program("cargo").context("`cargo` is not on PATH; install Rust from https://rustup.rs")?;
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--message-format=json-render-diagnostics"]).current_dir(dir);
    let stdout = run_build(cmd, "Building the agent (cargo build --release)…", printer).await?;
    // Cargo names the binaries it built; no guessing about target directories or names.
    let mut bins = Vec::new();
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if msg["reason"] == "compiler-artifact"
            && let Some(exe) = msg["executable"].as_str()
        {
            bins.push(PathBuf::from(exe));
        }
    }
    match bins.as_slice() {
        [one] => Ok(Program { program: one.clone(), args: Vec::new() }),
        [] => bail!("`cargo build` in {} produced no binary; the agent needs a `src/main.rs`", dir.display()),
        many => bail!(
            "`cargo build` in {} produced {} binaries ({}); keep one binary target in the agent's crate",
            dir.display(),
            many.len(),
            many.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Runs a build step; returns its standard output, or fails with the tail of its output.
async fn run_build(mut cmd: Command, what: &str, printer: Printer) -> anyhow::Result<String> {
    let spinner = printer.spinner(what);
    let out = cmd.stdin(Stdio::null()).output().await.with_context(|| format!("starting: {what}"))?;
    spinner.finish_and_clear();
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    if text.trim().is_empty() {
        text = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    bail!("the build failed ({}):\n{tail}\nFix the error above and run the command again", out.status)
}

fn needs_npm_install(dir: &Path) -> anyhow::Result<bool> {
    let file = dir.join("package.json");
    let Ok(text) = std::fs::read_to_string(&file) else { return Ok(false) };
    let pkg: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", file.display()))?;
    let has_deps =
        ["dependencies", "devDependencies"].iter().any(|k| pkg[k].as_object().is_some_and(|m| !m.is_empty()));
    Ok(has_deps && !dir.join("node_modules").is_dir())
}

fn node_main(dir: &Path) -> anyhow::Result<String> {
    let main = std::fs::read_to_string(dir.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|p| p["main"].as_str().map(str::to_owned));
    let entry = main.unwrap_or_else(|| "index.js".into());
    if !dir.join(&entry).is_file() {
        bail!("{} has no {entry}; set `entrypoint` in assegai.json", dir.display());
    }
    Ok(entry)
}

/// `"256MB"`, `"1GB"`, `"512MiB"`, `"1048576"` → bytes.
pub fn parse_memory(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().with_context(|| format!("`resources.memory` \"{text}\" does not start with a number"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => bail!("`resources.memory` \"{text}\": unknown unit `{other}` (use MB or GB, e.g. \"256MB\")"),
    };
    n.checked_mul(mult)
        .filter(|b| *b >= 16 << 20)
        .with_context(|| format!("`resources.memory` \"{text}\" is out of range (at least 16MB)"))
}

/// Starts the agent: cleared environment, its own process group (so a Ctrl-C at the terminal
/// reaches only the CLI, which then stops the agent in order), and the memory limit applied by a
/// `sh` that sets it and then becomes the agent.
pub fn spawn(
    program: &Program,
    dir: &Path,
    vars: &BTreeMap<String, OsString>,
    memory: Option<u64>,
) -> anyhow::Result<Child> {
    let mut cmd = match memory {
        Some(bytes) => {
            // RLIMIT_DATA rather than RLIMIT_AS: runtimes such as V8 reserve far more address space
            // than they ever use, which an address-space cap would refuse.
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(format!("ulimit -d {} && exec \"$0\" \"$@\"", bytes / 1024)).arg(&program.program);
            c
        }
        None => Command::new(&program.program),
    };
    cmd.args(&program.args)
        .current_dir(dir)
        .env_clear()
        .envs(vars)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd.spawn().with_context(|| format!("starting {}", program.program.display()))
}

/// Prints each line of `stream` prefixed with the agent's name (neutralised: the agent's bytes
/// never reach the terminal raw).
pub fn forward_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    name: &str,
    stderr: bool,
    printer: Printer,
) -> tokio::task::JoinHandle<()> {
    let prefix = format!("{} │", neutralize(name));
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    let text = format!("{} {}", style(&prefix).cyan(), neutralize(&line));
                    printer.agent_line(if stderr { AgentStream::Err } else { AgentStream::Out }, text);
                }
                Ok(None) => break,
                // Not UTF-8: show what can be shown rather than dropping the rest.
                Err(_) => continue,
            }
        }
    })
}

/// Asks the agent and every process it started to stop (SIGTERM to its process group), and kills
/// whatever has not stopped after `grace`.
pub async fn stop(child: &mut Child, group: Option<u32>, grace: Duration) -> anyhow::Result<ExitStatus> {
    let deadline = tokio::time::Instant::now() + grace;
    signal_group(group, Signal::SIGTERM);
    // And the agent itself, should it have moved to a group of its own (it is not reaped yet, so
    // its pid is still its own).
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let status = match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            signal_group(group, Signal::SIGKILL);
            child.start_kill().ok();
            child.wait().await?
        }
    };
    end_group(group, deadline).await;
    Ok(status)
}

/// Ends what is left of the agent's process group (processes it started and left behind, which
/// would otherwise live on with its token): they had SIGTERM with the agent, or get it now, and
/// SIGKILL at `deadline`.
pub async fn end_group(group: Option<u32>, deadline: tokio::time::Instant) {
    let Some(pgid) = group.and_then(|g| i32::try_from(g).ok()) else { return };
    if !group_alive(pgid) {
        return;
    }
    signal_group(group, Signal::SIGTERM);
    while group_alive(pgid) {
        if tokio::time::Instant::now() >= deadline {
            signal_group(group, Signal::SIGKILL);
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether any process of group `pgid` still runs. kill(2) also counts processes that have exited
/// and wait to be reaped by init (which may take seconds in a container); on Linux those are told
/// apart through /proc.
fn group_alive(pgid: i32) -> bool {
    if killpg(Pid::from_raw(pgid), None).is_err() {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return true };
    entries.flatten().filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))).any(
        |e| {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { return false };
            // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
            let Some((_, rest)) = stat.rsplit_once(')') else { return false };
            let mut fields = rest.split_whitespace();
            let (state, pgrp) = (fields.next(), fields.nth(1));
            pgrp.and_then(|p| p.parse::<i32>().ok()) == Some(pgid) && !matches!(state, Some("Z" | "X"))
        },
    )
}

/// Signals every process of the agent's group (the agent runs as its leader, see [`spawn`]).
fn signal_group(group: Option<u32>, signal: Signal) {
    if let Some(pgid) = group.and_then(|g| i32::try_from(g).ok()) {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// "exited with status 0", "was killed by SIGKILL".
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => {
            let name =
                nix::sys::signal::Signal::try_from(sig).map_or_else(|_| sig.to_string(), |s| s.as_str().to_owned());
            format!("was stopped by {name}")
        }
        _ => "ended".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("256MB").unwrap(), 256 << 20);
        assert_eq!(parse_memory("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_memory("512 MiB").unwrap(), 512 << 20);
        for bad in ["", "MB", "-1MB", "12XB", "1KB", "99999999999999999999GB"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_agent_sees_only_its_own_variables() {
        let e = AgentEnv {
            proxy_url: "http://127.0.0.1:1".into(),
            agent_id: "ag_1".into(),
            token: "asg_x".into(),
            workspace: "/w".into(),
        };
        let vars = e.vars(Path::new("/opt/node/bin/node"));
        let names: Vec<_> = vars.keys().map(String::as_str).filter(|k| *k != "TERM").collect();
        assert_eq!(
            names,
            [
                "ASSEGAI_AGENT_ID",
                "ASSEGAI_AGENT_TOKEN",
                "ASSEGAI_API_PROXY",
                "ASSEGAI_WORKSPACE",
                "HOME",
                "LANG",
                "PATH"
            ]
        );
        assert_eq!(vars["PATH"], "/opt/node/bin:/usr/local/bin:/usr/bin:/bin");
        assert_eq!(e.vars(Path::new("/usr/bin/node"))["PATH"], SYSTEM_PATH);
    }
}
