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
    ids::AgentId,
    manifest::{Manifest, Runtime},
    sanitize::neutralize,
    store::{LogQuery, NewLog, Store},
};
use assegai_sdk::{LogLevel, env};
use console::style;
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
};

use crate::{
    commands::logs::level_style,
    printer::{AgentStream, Printer},
    sandbox::{self, Rules},
};

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
    /// Its private temporary directory (`TMPDIR`), made for this run.
    pub tmp: PathBuf,
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
            ("TMPDIR".to_owned(), self.tmp.clone().into_os_string()),
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
    let mut asked = Command::new(&python);
    for (name, _) in std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("ASSEGAI_")) {
        asked.env_remove(name);
    }
    let asked =
        asked.args(["-c", "import sys; print(sys.executable)"]).stdin(Stdio::null()).stderr(Stdio::null()).output();
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
/// when it fails) and returns what to start. The build is agent code too (`build.rs`, proc
/// macros, install scripts): with `confine` it runs in the sandbox, reading the agent's directory
/// and the toolchain, writing only the build's output and the package manager's cache.
pub async fn build(
    dir: &Path,
    manifest: &Manifest,
    home: &Path,
    confine: bool,
    printer: Printer,
) -> anyhow::Result<Program> {
    match manifest.runtime.unwrap_or(Runtime::Command) {
        Runtime::Rust => build_rust(dir, home, confine, printer).await,
        Runtime::Node => {
            let node = find_program("node").context("`node` is not on PATH; install Node.js 18 or newer")?;
            if needs_npm_install(dir)? {
                let npm = find_program("npm").context("`npm` is not on PATH; install Node.js with npm")?;
                let tmp = build_tmp()?;
                let rules = if confine { npm_rules(dir, &node, &npm, tmp.path(), home)? } else { Rules::unconfined() };
                // Dependencies' install scripts are code nobody reviewed: run only when the
                // manifest asks (a permission like any other, widened only by a person).
                let mut args = vec![OsString::from("install"), "--no-audit".into(), "--no-fund".into()];
                if !manifest.permissions.install_scripts {
                    args.push("--ignore-scripts".into());
                }
                let mut cmd = rules.command(&npm, &args)?;
                cmd.current_dir(dir).env_clear().envs(build_env(tmp.path()));
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

async fn build_rust(dir: &Path, home: &Path, confine: bool, printer: Printer) -> anyhow::Result<Program> {
    let cargo = find_program("cargo").context("`cargo` is not on PATH; install Rust from https://rustup.rs")?;
    let tmp = build_tmp()?;
    let rules = if confine { cargo_rules(dir, &cargo, tmp.path(), home)? } else { Rules::unconfined() };
    let args = ["build", "--release", "--message-format=json-render-diagnostics"].map(OsString::from);
    let mut cmd = rules.command(&cargo, &args)?;
    cmd.current_dir(dir).env_clear().envs(build_env(tmp.path()));
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

/// A private temporary directory for one build (the linker's and npm's scratch files).
fn build_tmp() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix("assegai-build-").tempdir().context("creating a temporary directory for the build")
}

/// The user's environment as far as a build needs it: the toolchain's own settings, locale,
/// proxies and certificates; never an `ASSEGAI_*` variable or a token, and no API key the user's
/// shell happens to hold.
fn build_env(tmp: &Path) -> BTreeMap<OsString, OsString> {
    const NAMES: &[&str] = &[
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "TERM",
        "TZ",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "NODE_EXTRA_CA_CERTS",
        "CC",
        "CXX",
        "AR",
        "LD",
        "CFLAGS",
        "CXXFLAGS",
        "LDFLAGS",
        "PKG_CONFIG_PATH",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "no_proxy",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTC",
        "RUSTC_WRAPPER",
    ];
    const PREFIXES: &[&str] = &["CARGO_", "RUSTUP_", "NPM_CONFIG_", "npm_config_"];
    let mut vars: BTreeMap<OsString, OsString> = std::env::vars_os()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            (NAMES.contains(&k.as_ref()) || PREFIXES.iter().any(|p| k.starts_with(p)))
                && !k.to_ascii_uppercase().contains("TOKEN")
        })
        .collect();
    vars.insert("TMPDIR".into(), tmp.into());
    vars
}

/// `CARGO_HOME` and `RUSTUP_HOME` as cargo and rustup resolve them.
fn tool_home(var: &str, default: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from).or_else(|| user_home().map(|h| h.join(default)))
}

/// A cargo build: the toolchain read, the crate (and its path dependencies) read, the crate's
/// directory, its target directory and cargo's download cache written. Not the rest of
/// `CARGO_HOME`: `bin/` and `credentials.toml` stay out of reach.
fn cargo_rules(dir: &Path, cargo: &Path, tmp: &Path, home: &Path) -> anyhow::Result<Rules> {
    let mut rules = Rules::system();
    rules.write(dir).write(tmp).read(sandbox::program_prefix(cargo, &private_dirs(home)));
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR").filter(|t| !t.is_empty()) {
        // Made here: cargo creates a missing one beside it (`<target>XXXX`, renamed), outside
        // what the build may write.
        let target = dir.join(target);
        std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
        rules.write(target);
    }
    if let Some(rustup) = tool_home("RUSTUP_HOME", ".rustup") {
        rules.read(rustup);
    }
    if let Some(cargo_home) = tool_home("CARGO_HOME", ".cargo") {
        rules.read(cargo_home.join("bin")).read(cargo_home.join("config.toml")).read(cargo_home.join("config"));
        for cache in ["registry", "git", ".package-cache", ".package-cache-mutate", ".global-cache"] {
            rules.write(cargo_home.join(cache));
        }
    }
    let mut seen = Vec::new();
    path_dependencies(dir, &mut seen, 0);
    for dep in seen {
        // Cargo reads the workspace root above a path dependency for what it inherits.
        for ancestor in dep.ancestors().skip(1) {
            let manifest = ancestor.join("Cargo.toml");
            if manifest.is_file() {
                rules.read(manifest);
            }
        }
        rules.read(dep);
    }
    Ok(rules)
}

/// The crates `dir/Cargo.toml` depends on by path, and theirs (to a small depth).
fn path_dependencies(dir: &Path, seen: &mut Vec<PathBuf>, depth: usize) {
    let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else { return };
    let Ok(doc) = text.parse::<toml::Table>() else { return };
    let mut tables: Vec<&toml::Table> = Vec::new();
    let sections = ["dependencies", "dev-dependencies", "build-dependencies"];
    for key in sections {
        tables.extend(doc.get(key).and_then(toml::Value::as_table));
    }
    for (_, target) in doc.get("target").and_then(toml::Value::as_table).into_iter().flatten() {
        for key in sections {
            tables.extend(target.get(key).and_then(toml::Value::as_table));
        }
    }
    for (_, source) in doc.get("patch").and_then(toml::Value::as_table).into_iter().flatten() {
        tables.extend(source.as_table());
    }
    if let Some(ws) = doc.get("workspace").and_then(toml::Value::as_table) {
        tables.extend(ws.get("dependencies").and_then(toml::Value::as_table));
    }
    let paths: Vec<PathBuf> = tables
        .iter()
        .flat_map(|t| t.values())
        .filter_map(|d| d.get("path").and_then(toml::Value::as_str))
        .filter_map(|p| dir.join(p).canonicalize().ok())
        .collect();
    for path in paths {
        if !seen.contains(&path) {
            seen.push(path.clone());
            if depth < 4 {
                path_dependencies(&path, seen, depth + 1);
            }
        }
    }
}

/// `npm install`: node and npm read, the package's directory, npm's cache and a temporary
/// directory written; `~/.npmrc` read (the registry it names).
fn npm_rules(dir: &Path, node: &Path, npm: &Path, tmp: &Path, home: &Path) -> anyhow::Result<Rules> {
    let private = private_dirs(home);
    let mut rules = Rules::system();
    rules.write(dir).write(tmp).read(sandbox::program_prefix(node, &private));
    rules.read(sandbox::program_prefix(&npm.canonicalize().unwrap_or_else(|_| npm.to_owned()), &private));
    let cache = std::env::var_os("npm_config_cache").map(PathBuf::from).or_else(|| user_home().map(|h| h.join(".npm")));
    if let Some(cache) = cache {
        std::fs::create_dir_all(&cache).ok();
        rules.write(cache);
    }
    if let Some(user) = user_home() {
        rules.read(user.join(".npmrc"));
    }
    Ok(rules)
}

/// Runs a build step; returns its standard output, or fails with the tail of its output.
async fn run_build(mut cmd: Command, what: &str, printer: Printer) -> anyhow::Result<String> {
    let spinner = printer.spinner(what);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting: {what}"))?;
    // The build has a session of its own (see `sandbox::trampoline`), so a Ctrl-C at the terminal
    // does not reach it: when `run` gives up waiting (it was interrupted), the whole build goes.
    let _group = BuildGroup(child.id());
    let out = child.wait_with_output().await.with_context(|| format!("waiting for: {what}"))?;
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
    let confined = if cmd.as_std().get_args().any(|a| a == "--confine") {
        "\nThe build ran in the sandbox: it reads the agent's directory and the toolchain and writes only its output and the package cache; `Permission denied` above means it reached for something else"
    } else {
        ""
    };
    bail!("the build failed ({}):\n{tail}{confined}\nFix the error above and run the command again", out.status)
}

/// A running build's process group (its leader's pid), killed when dropped: a build that ended
/// has no group left to signal, so only an abandoned one is stopped.
struct BuildGroup(Option<u32>);

impl Drop for BuildGroup {
    fn drop(&mut self) {
        signal_group(self.0, Signal::SIGKILL);
    }
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

/// Starts the agent through the sandbox trampoline: exactly `vars` as its environment (the
/// trampoline adds nothing, and no shell stands between: no `PWD`, `SHLVL` or `_`), its own
/// session and so process group (the trampoline calls `setsid`: a Ctrl-C at the terminal reaches
/// only the CLI, which then stops the agent in order, and the agent has no terminal to draw on),
/// confined by `rules` with their memory limit.
pub fn spawn(program: &Program, dir: &Path, vars: &BTreeMap<String, OsString>, rules: &Rules) -> anyhow::Result<Child> {
    let mut cmd = rules.command(&program.program, &program.args)?;
    cmd.current_dir(dir)
        .env_clear()
        .envs(vars)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().with_context(|| format!("starting {}", program.program.display()))
}

/// What the agent may touch when it runs: the system, its own directory and interpreter (read),
/// its workspace and private temporary directory (read and write). Refused when the agent's
/// directory holds the assegai home: granting the one would grant the other.
pub fn agent_rules(
    program: &Program,
    dir: &Path,
    workspace: &Path,
    tmp: &Path,
    home: &Path,
    memory: Option<u64>,
) -> anyhow::Result<Rules> {
    if home.starts_with(dir) {
        bail!(
            "the agent's directory {} contains the assegai home {}: the agent could read the database and keys; move the agent to a directory of its own",
            dir.display(),
            home.display()
        );
    }
    let mut rules = Rules::system();
    rules.read(dir).write(workspace).write(tmp).data_limit(memory);
    rules.read(sandbox::program_prefix(&program.program, &private_dirs(home)));
    for arg in &program.args {
        // An interpreter's script outside the agent's directory (`entrypoint` with a path).
        let p = Path::new(arg);
        if p.is_absolute() && p.is_file() && !p.starts_with(dir) {
            rules.read(sandbox::program_prefix(p, &private_dirs(home)));
        }
    }
    Ok(rules)
}

/// Directories no grant may contain: the assegai home and the user's home.
fn private_dirs(home: &Path) -> Vec<PathBuf> {
    std::iter::once(home.to_owned()).chain(user_home()).collect()
}

fn user_home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
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

/// Lines the agent logs through the proxy, shown as they arrive (see [`forward_logs`] and
/// [`follow_logs`]) until [`LogFollower::finish`].
pub struct LogFollower {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl LogFollower {
    /// Shows what has arrived so far and stops.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// One logged line as `run` shows it: prefixed like the agent's output, its level, the message
/// (and data) neutralised.
fn log_line(prefix: &str, level: LogLevel, message: &str, data: Option<&serde_json::Value>) -> String {
    let mut line = format!(
        "{} {} {}",
        style(prefix).cyan(),
        level_style(level).apply_to(format!("[{}]", level.as_str())),
        neutralize(message)
    );
    if let Some(data) = data {
        line.push(' ');
        line.push_str(&style(neutralize(&data.to_string())).dim().to_string());
    }
    line
}

/// Shows the lines agent `agent_id` logs to the proxy this process runs (they arrive on `lines`).
pub fn forward_logs(
    mut lines: tokio::sync::broadcast::Receiver<std::sync::Arc<NewLog>>,
    agent_id: &AgentId,
    name: &str,
    printer: Printer,
) -> LogFollower {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let (stop, mut stopping) = tokio::sync::watch::channel(false);
    let (agent_id, prefix) = (agent_id.clone(), format!("{} │", neutralize(name)));
    let show = move |line: &NewLog| {
        if line.agent_id == agent_id {
            let text = log_line(&prefix, line.level, &line.message, line.data.as_ref());
            printer.agent_line(AgentStream::Out, text);
        }
    };
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                got = lines.recv() => match got {
                    Ok(line) => show(&line),
                    Err(RecvError::Lagged(n)) => {
                        printer.warn(format!("{n} log lines were not shown (the console fell behind); see `assegai logs`"));
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = stopping.wait_for(|s| *s) => {
                    loop {
                        match lines.try_recv() {
                            Ok(line) => show(&line),
                            Err(TryRecvError::Lagged(_)) => {}
                            Err(_) => return,
                        }
                    }
                }
            }
        }
    });
    LogFollower { stop, task }
}

/// Shows the lines agent `agent_id` logs from now on, read from the database: for a proxy that
/// runs in another process (the one this process runs is followed by [`forward_logs`]).
pub fn follow_logs(store: Store, agent_id: &AgentId, name: &str, printer: Printer) -> anyhow::Result<LogFollower> {
    const POLL: Duration = Duration::from_millis(200);
    let mut query = LogQuery { agent_id: Some(agent_id.clone()), limit: Some(1), ..LogQuery::default() };
    // Only what is logged from now on: earlier runs' lines are in `assegai logs`.
    query.after_id = store.logs(&query)?.last().map(|l| l.id);
    query.limit = None;
    let prefix = format!("{} │", neutralize(name));
    let (stop, mut stopping) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let last_round = *stopping.borrow_and_update();
            for line in store.logs(&query).unwrap_or_default() {
                query.after_id = Some(line.id);
                printer.agent_line(AgentStream::Out, log_line(&prefix, line.level, &line.message, line.data.as_ref()));
            }
            if last_round {
                return;
            }
            tokio::select! {
                _ = stopping.changed() => {
                    // The proxy stores lines in batches: give the last ones a moment.
                    tokio::time::sleep(POLL).await;
                }
                () = tokio::time::sleep(POLL) => {}
            }
        }
    });
    Ok(LogFollower { stop, task })
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
    end_tree(deadline).await;
    Ok(status)
}

/// Ends what is left of the agent's process tree: processes it started and left behind, in its
/// group or not (`setsid`, double forks: `run` is a child subreaper, so they are still its
/// descendants), which would otherwise live on with its token. They get SIGTERM, and SIGKILL at
/// `deadline`; the exited ones are reaped.
pub async fn end_tree(deadline: tokio::time::Instant) {
    let me = std::process::id();
    let mut signal = Signal::SIGTERM;
    loop {
        let left = descendants(me);
        if left.is_empty() {
            break;
        }
        for pid in &left {
            let _ = nix::sys::signal::kill(Pid::from_raw(*pid), signal);
        }
        if signal == Signal::SIGKILL && tokio::time::Instant::now() >= deadline + Duration::from_secs(2) {
            tracing::warn!(left = left.len(), "agent processes survived SIGKILL");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if tokio::time::Instant::now() >= deadline {
            signal = Signal::SIGKILL;
        }
    }
    reap_orphans();
}

/// Becomes the reaper of everything the agent starts: orphans are re-parented to this process
/// instead of init, so none escapes [`end_tree`] by double-forking.
pub fn become_subreaper() -> anyhow::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).context("making `run` a child subreaper")
}

/// Collects the exit status of re-parented orphans (they are not tokio's children). Called only
/// once the agent itself has been waited for, so no status tokio waits on is taken.
fn reap_orphans() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// The living (not zombie) descendants of `root`, from /proc.
pub fn descendants(root: u32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut parents = std::collections::HashMap::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let mut fields = rest.split_whitespace();
        let (state, ppid) = (fields.next(), fields.next().and_then(|p| p.parse::<i32>().ok()));
        if let Some(ppid) = ppid {
            parents.insert(pid, (ppid, matches!(state, Some("Z" | "X"))));
        }
    }
    let root = i32::try_from(root).unwrap_or(-1);
    parents
        .iter()
        .filter(|(_, (_, dead))| !dead)
        .filter(|(pid, _)| {
            let mut at = **pid;
            for _ in 0..4096 {
                match parents.get(&at) {
                    Some((ppid, _)) if *ppid == root => return true,
                    Some((ppid, _)) if *ppid > 1 => at = *ppid,
                    _ => return false,
                }
            }
            false
        })
        .map(|(pid, _)| *pid)
        .collect()
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
            tmp: "/t".into(),
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
                "PATH",
                "TMPDIR"
            ]
        );
        assert_eq!(vars["PATH"], "/opt/node/bin:/usr/local/bin:/usr/bin:/bin");
        assert_eq!(e.vars(Path::new("/usr/bin/node"))["PATH"], SYSTEM_PATH);
    }
}
