//! Test helpers shared by every e2e test and the benchmarks: a temp `ASSEGAI_HOME`, a real Anvil
//! node, the real `assegai` binary running as the proxy, and agents registered through the CLI.
//! Everything started here is killed when its owner is dropped.

pub mod bench;
pub mod fake_ai;
pub mod postgres;
pub mod redis;
pub mod rpc_tap;

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex, OnceLock, mpsc},
    time::{Duration, Instant},
};

use assegai_sdk::Assegai;
use serde_json::Value;

/// The passphrase every command of a [`TestEnv`] gets for the encrypted-file key store.
pub const TEST_PASSPHRASE: &str = "correct horse battery staple";

/// Runs a prepared command with `input` on its standard input and collects its output. A command
/// that refuses before reading (a damaged key file, a bad flag) closes the pipe early; that is an
/// outcome for the caller to assert on, not a test failure, so a broken pipe is ignored.
pub fn output_with_stdin(mut cmd: Command, input: &[u8]) -> Output {
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starting the command");
    let written = child.stdin.take().expect("piped stdin").write_all(input);
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "writing the command's input: {e}");
    }
    child.wait_with_output().expect("waiting for the command")
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_owned()
}

/// The `assegai` binary, built once per test process so it is never stale.
pub fn assegai_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("ASSEGAI_BIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "assegai", "--bin", "assegai"])
            .current_dir(workspace_root())
            .status()
            .expect("running cargo build for the assegai binary");
        assert!(status.success(), "cargo build -p assegai failed");
        // The test executable lives in target/<profile>/deps/.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
        let bin = profile_dir.join("assegai");
        assert!(bin.exists(), "{} not found after building", bin.display());
        bin
    })
    .clone()
}

/// The Anvil binary: `$ANVIL_BIN`, else the one `.ci/run` installs under `.tools/`, else `anvil`.
pub fn anvil_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ANVIL_BIN") {
        return PathBuf::from(p);
    }
    let local = workspace_root().join(".tools/node_modules/.bin/anvil");
    if local.exists() { local } else { PathBuf::from("anvil") }
}

/// Reads a child's output into a shared buffer on a thread, and reports lines as they come.
fn capture(stream: impl Read + Send + 'static, buf: Arc<Mutex<Vec<u8>>>, lines: Option<mpsc::Sender<String>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).map(|n| n > 0).unwrap_or(false) {
            buf.lock().unwrap().extend_from_slice(&line);
            if let Some(tx) = &lines {
                let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
            }
            line.clear();
        }
    });
}

/// Waits for a line containing `needle` and returns the text after it.
fn wait_for_line(rx: &mpsc::Receiver<String>, needle: &str, timeout: Duration, what: &str) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(i) = line.find(needle) {
                    return line[i + needle.len()..].trim().to_owned();
                }
            }
            Err(_) => panic!("{what} did not print `{needle}` within {timeout:?}"),
        }
    }
}

/// A real Anvil node on a free loopback port.
pub struct Anvil {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Anvil {
    /// Starts Anvil and waits until it listens.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts Anvil with extra arguments (`--chain-id 1`, say) and waits until it listens.
    pub fn start_with(args: &[&str]) -> Self {
        let mut child = Command::new(anvil_bin())
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start anvil ({}): {e}; run .ci/run or set ANVIL_BIN", anvil_bin().display())
            });
        let (tx, rx) = mpsc::channel();
        capture(child.stdout.take().unwrap(), Arc::default(), Some(tx));
        let addr = wait_for_line(&rx, "Listening on ", Duration::from_secs(30), "anvil");
        // Keep draining Anvil's per-request logging so it never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Anvil { child, url: format!("http://{addr}") }
    }

    /// Calls Anvil directly (not through the proxy).
    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let v: Value = reqwest::Client::new()
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .expect("anvil answers")
            .json()
            .await
            .expect("anvil replied with JSON");
        v["result"].clone()
    }

    /// Deploys `creation` (creation bytecode as hex, as solc writes it, with or without `0x`) from
    /// Anvil's first unlocked account, waits for it to be mined, and returns the contract's address.
    pub async fn deploy(&self, creation: &str) -> String {
        let data = format!("0x{}", creation.trim().trim_start_matches("0x"));
        let from = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
        let hash = self.rpc("eth_sendTransaction", serde_json::json!([{"from": from, "data": data}])).await;
        assert!(hash.is_string(), "Anvil refused the deployment: {hash}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let receipt = loop {
            let receipt = self.rpc("eth_getTransactionReceipt", serde_json::json!([hash])).await;
            if !receipt.is_null() {
                break receipt;
            }
            assert!(std::time::Instant::now() < deadline, "the deployment {hash} was not mined within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(receipt["status"], "0x1", "the constructor reverted: {receipt}");
        receipt["contractAddress"].as_str().expect("a contract address").to_owned()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The proxy: the real binary running `assegai proxy`.
pub struct Proxy {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Proxy {
    /// Everything the proxy printed so far (stdout then stderr).
    pub fn output(&self) -> Vec<u8> {
        let mut all = self.stdout.lock().unwrap().clone();
        all.extend_from_slice(&self.stderr.lock().unwrap());
        all
    }

    /// The proxy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for a clean exit; returns whether it exited with success.
    pub fn terminate(mut self) -> bool {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running command whose output is captured, for commands that run until stopped (`assegai
/// run`, agents). Killed when dropped.
pub struct Running {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Running {
    /// Starts `cmd` with its output captured.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starting the command");
        let (stdout, stderr) = (Arc::default(), Arc::default());
        capture(child.stdout.take().unwrap(), Arc::clone(&stdout), None);
        capture(child.stderr.take().unwrap(), Arc::clone(&stderr), None);
        Running { child, stdout, stderr }
    }

    /// Standard output so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// Standard error so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits until stdout or stderr contains `needle`; panics with both after `timeout`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) {
        self.wait_until(timeout, &format!("`{needle}`"), |r| {
            (r.stdout().contains(needle) || r.stderr().contains(needle)).then_some(())
        });
    }

    /// Polls `check` while the process runs, until it returns `Some`; panics with the output so
    /// far when the process exits first or `timeout` passes, so a failure says what happened.
    pub fn wait_until<T>(&mut self, timeout: Duration, what: &str, mut check: impl FnMut(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Output may still be in flight from the capture threads.
                std::thread::sleep(Duration::from_millis(100));
                if let Some(v) = check(self) {
                    return v;
                }
                panic!(
                    "exited ({status}) while waiting for {what}:\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}:\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Sends a signal (`"INT"`, `"TERM"`…).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the exit, up to `timeout`; `None` if it is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the capture threads take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temp `ASSEGAI_HOME` and the processes of one test. With `ASSEGAI_TEST_DATABASE=postgres`
/// (see [`postgres::selected`]) its commands use a fresh database on a real PostgreSQL instead of
/// the home's SQLite file, so the same tests run against both backends.
pub struct TestEnv {
    home: tempfile::TempDir,
    /// The chain, if started.
    pub anvil: Option<Anvil>,
    database: Option<(Arc<postgres::Postgres>, String)>,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    /// A fresh home, no processes.
    pub fn new() -> Self {
        let database = postgres::selected().then(|| {
            let server = postgres::shared();
            let url = server.fresh_database();
            (server, url)
        });
        TestEnv { home: tempfile::tempdir().expect("temp dir"), anvil: None, database }
    }

    /// A fresh home on a fresh shared PostgreSQL database, whatever the process's backend (a team
    /// test; give the other homes [`TestEnv::beside`]).
    pub fn on_postgres() -> Self {
        let server = postgres::shared();
        let url = server.fresh_database();
        TestEnv { home: tempfile::tempdir().expect("temp dir"), anvil: None, database: Some((server, url)) }
    }

    /// A fresh home on its own SQLite file, whatever the process's backend.
    pub fn on_sqlite() -> Self {
        TestEnv { home: tempfile::tempdir().expect("temp dir"), anvil: None, database: None }
    }

    /// Another host of the same team: a home of its own, on `other`'s database.
    pub fn beside(other: &TestEnv) -> Self {
        TestEnv { home: tempfile::tempdir().expect("temp dir"), anvil: None, database: other.database.clone() }
    }

    /// The shared database's URL, when this home has one.
    pub fn database_url(&self) -> Option<&str> {
        self.database.as_ref().map(|(_, url)| url.as_str())
    }

    /// Every byte the database holds: the SQLite files, or each PostgreSQL row as text (to
    /// search for a secret that must not be stored).
    pub fn database_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        match self.database_url() {
            None => {
                for entry in std::fs::read_dir(self.home()).expect("reading the home") {
                    let path = entry.expect("a home entry").path();
                    if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("assegai.db")) {
                        bytes.extend(std::fs::read(&path).expect("reading a database file"));
                    }
                }
                assert!(!bytes.is_empty(), "no assegai.db in {}", self.home().display());
            }
            Some(url) => postgres::off_runtime(|| {
                let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).expect("connecting");
                let tables = client
                    .query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", &[])
                    .expect("listing tables");
                assert!(!tables.is_empty(), "no tables in the shared database");
                for table in tables {
                    let name: String = table.get(0);
                    for row in client.query(&format!("SELECT t::text FROM \"{name}\" t"), &[]).expect("reading") {
                        bytes.extend(row.get::<_, String>(0).into_bytes());
                        bytes.push(b'\n');
                    }
                }
            }),
        }
        bytes
    }

    /// Runs one statement on this home's database behind the proxy's back (to plant what an older
    /// or hand-edited database could hold). `?N` placeholders, text arguments.
    pub fn execute_sql(&self, sql: &str, args: &[&str]) {
        match self.database_url() {
            None => {
                let db = rusqlite::Connection::open(self.home().join("assegai.db")).expect("opening assegai.db");
                db.busy_timeout(Duration::from_secs(30)).expect("busy timeout");
                db.execute(sql, rusqlite::params_from_iter(args)).expect("running the statement");
            }
            Some(url) => postgres::off_runtime(|| {
                let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).expect("connecting");
                let sql = sql.replace('?', "$");
                let params: Vec<&(dyn ::postgres::types::ToSql + Sync)> =
                    args.iter().map(|a| a as &(dyn ::postgres::types::ToSql + Sync)).collect();
                client.execute(&sql, &params).expect("running the statement");
            }),
        }
    }

    /// The first column of a query's rows, as text (`SELECT … ::text` / `CAST(… AS TEXT)`), on
    /// this home's database.
    pub fn query_strings(&self, sql: &str) -> Vec<String> {
        match self.database_url() {
            None => {
                let db = rusqlite::Connection::open(self.home().join("assegai.db")).expect("opening assegai.db");
                let mut stmt = db.prepare(sql).expect("preparing the query");
                stmt.query_map([], |r| r.get::<_, String>(0)).expect("querying").map(|r| r.expect("a row")).collect()
            }
            Some(url) => postgres::off_runtime(|| {
                let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).expect("connecting");
                client.query(sql, &[]).expect("querying").iter().map(|r| r.get::<_, String>(0)).collect()
            }),
        }
    }

    /// Opens this home's database in this process, as its commands do.
    pub fn store(&self) -> assegai_proxy::store::Store {
        assegai_proxy::store::Store::open_for(&assegai_proxy::config::Home::at(self.home()), self.database_url())
            .expect("opening the store")
    }

    /// A fresh home and a running Anvil, with `config.toml` pointing the local chain at it.
    pub fn with_anvil() -> Self {
        let mut env = Self::new();
        env.anvil = Some(Anvil::start());
        env.write_config("");
        env
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The Anvil node.
    pub fn anvil(&self) -> &Anvil {
        self.anvil.as_ref().expect("TestEnv::with_anvil")
    }

    /// Writes `config.toml`: the local RPC URL (when Anvil runs) plus `extra` TOML.
    pub fn write_config(&self, extra: &str) {
        let mut text = String::new();
        if let Some(a) = &self.anvil {
            text.push_str(&format!("local_rpc_url = \"{}\"\n", a.url));
        }
        text.push_str(extra);
        std::fs::write(self.home().join("config.toml"), text).expect("write config.toml");
    }

    /// `assegai ARGS` with this home, no colour, no stdin.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(assegai_bin());
        c.args(args)
            .env("ASSEGAI_HOME", self.home())
            .env("ASSEGAI_PASSPHRASE", TEST_PASSPHRASE)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        if let Some(url) = self.database_url() {
            c.env(assegai_sdk::env::DATABASE_URL, url);
        }
        c
    }

    /// Runs `assegai ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running assegai")
    }

    /// Runs `assegai ARGS`, asserts success, and returns stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "assegai {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Starts `assegai proxy` on a free port and waits until it listens.
    pub fn start_proxy(&self) -> Proxy {
        self.start_proxy_with(|_| {})
    }

    /// Like [`TestEnv::start_proxy`], with `adjust` applied to the command first (to change its
    /// environment, say).
    pub fn start_proxy_with(&self, adjust: impl FnOnce(&mut Command)) -> Proxy {
        let mut cmd = self.cmd(&["proxy", "--listen", "127.0.0.1:0"]);
        adjust(&mut cmd);
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starting assegai proxy");
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let (tx, rx) = mpsc::channel();
        capture(child.stdout.take().unwrap(), Arc::clone(&stdout), None);
        capture(child.stderr.take().unwrap(), Arc::clone(&stderr), Some(tx));
        let rest = wait_for_line(&rx, "listening on ", Duration::from_secs(30), "assegai proxy");
        let url = rest.split_whitespace().next().expect("an address after `listening on`").to_owned();
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Proxy { child, url, stdout, stderr }
    }

    /// Registers an agent through the CLI (`agents add NAME [--manifest]`); returns (id, token).
    pub fn add_agent(&self, name: &str, manifest: Option<&Value>) -> (String, String) {
        let mut args = vec!["agents", "add", name, "--json"];
        let path = self.home().join(format!("{name}.assegai.json"));
        if let Some(m) = manifest {
            std::fs::write(&path, m.to_string()).expect("write manifest");
            args.extend(["--manifest", path.to_str().unwrap()]);
        }
        let out: Value = serde_json::from_str(&self.run_ok(&args)).expect("agents add --json prints JSON");
        (out["id"].as_str().unwrap().to_owned(), out["token"].as_str().unwrap().to_owned())
    }

    /// An SDK client for an agent, with retries off so tests see every reply.
    pub fn sdk(&self, proxy: &Proxy, id: &str, token: &str) -> Assegai {
        Assegai::builder().proxy_url(&proxy.url).agent_id(id).agent_token(token).max_retries(0).build().unwrap()
    }
}

/// A loopback port nothing listens on (bound, then released), for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Whether `haystack` contains `needle` as bytes.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
