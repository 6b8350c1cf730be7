//! A real PostgreSQL server for a test: a fresh cluster in a temporary directory (`initdb`, trust
//! authentication on loopback only), `postgres` on a free port, stopped and removed on drop.
//!
//! PostgreSQL refuses to run as root; as root (CI), the cluster belongs to the `postgres` user
//! (created by Debian's package), and both commands run as it through `runuser`. The binaries are
//! Debian's (`/usr/lib/postgresql/<version>/bin`, `apt-get install postgresql`, which
//! `scripts/test` does), or the ones on `PATH`.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

/// The environment variable that runs a test process's [`crate::TestEnv`]s on PostgreSQL
/// (`ASSEGAI_TEST_DATABASE=postgres`) instead of each home's SQLite file.
pub const BACKEND_VAR: &str = "ASSEGAI_TEST_DATABASE";

/// Whether this test process runs its homes on PostgreSQL (see [`BACKEND_VAR`]).
pub fn selected() -> bool {
    std::env::var(BACKEND_VAR).is_ok_and(|v| v == "postgres")
}

/// Runs `f` on a thread of its own: the sync client cannot run inside a tokio test's runtime.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
}

/// The server this test process's tests share (each with databases of its own): started by the
/// first that asks, stopped when the last holder drops it.
pub fn shared() -> Arc<Postgres> {
    static SERVER: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());
    let mut slot = SERVER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(server) = slot.upgrade() {
        return server;
    }
    let server = Arc::new(Postgres::start());
    *slot = Arc::downgrade(&server);
    server
}

/// A running server; `url()` connects as its superuser `assegai`.
pub struct Postgres {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// Starts a new cluster, or panics saying what to install.
    pub fn start() -> Self {
        off_runtime(Self::start_here)
    }

    fn start_here() -> Self {
        let bin = binaries().expect(
            "PostgreSQL is not installed: `apt-get install postgresql` (./scripts/test installs it), or put initdb and \
             postgres on PATH",
        );
        let dir = tempfile::Builder::new().prefix("assegai-pg-").tempdir().expect("a temporary directory");
        let data = dir.path().join("data");
        let user = run_as();
        if let Some(user) = &user {
            let ok = Command::new("chown").args([user.as_str(), dir.path().to_str().unwrap()]).status();
            assert!(ok.is_ok_and(|s| s.success()), "chown {user} {}", dir.path().display());
        }
        let out = command(&user, &bin.join("initdb"))
            .args(["-D", data.to_str().unwrap(), "-U", "assegai", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = crate::free_port();
        let child = command(&user, &bin.join("postgres"))
            .args(["-D", data.to_str().unwrap(), "-p", &port.to_string(), "-k", dir.path().to_str().unwrap()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=100"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting postgres");
        let pg = Postgres { child, port, _dir: dir };
        crate::wait_until(Duration::from_secs(30), "PostgreSQL to accept connections", || {
            postgres::Client::connect(&pg.url(), postgres::NoTls).ok().map(drop)
        });
        pg
    }

    /// `postgres://assegai@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://assegai@127.0.0.1:{}/postgres", self.port)
    }

    /// A new database with a name no other call gives, and its URL.
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        self.database(&format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)))
    }

    /// A new database on this server, and its URL (each test its own, on one server).
    pub fn database(&self, name: &str) -> String {
        off_runtime(|| {
            let mut client = postgres::Client::connect(&self.url(), postgres::NoTls).expect("connecting");
            client.batch_execute(&format!("CREATE DATABASE {name}")).expect("CREATE DATABASE");
        });
        format!("postgres://assegai@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGTERM: a smart shutdown; runuser passes it on to postgres.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory holding `initdb` and `postgres`.
fn binaries() -> Option<PathBuf> {
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    debian.sort();
    debian.pop().or_else(|| {
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
    })
}

/// The user to run PostgreSQL as, when this process is root.
fn run_as() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    (String::from_utf8_lossy(&uid.stdout).trim() == "0").then(|| "postgres".to_owned())
}

fn command(user: &Option<String>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}
