//! A real Redis server for a test: `redis-server` on a free loopback port, nothing saved to disk,
//! stopped on drop. Debian's `redis-server` package (which `scripts/test` installs).

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A running server.
pub struct Redis {
    child: Child,
    port: u16,
    password: Option<String>,
}

impl Redis {
    /// Starts a server on a free port, or panics saying what to install.
    pub fn start() -> Self {
        Self::start_on(crate::free_port())
    }

    /// Starts a server that takes only clients giving `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> Self {
        Self::spawn(crate::free_port(), Some(password))
    }

    /// Starts a server on `port` (again, after [`Redis::stop`]).
    pub fn start_on(port: u16) -> Self {
        Self::spawn(port, None)
    }

    fn spawn(port: u16, password: Option<&str>) -> Self {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"]);
        if let Some(password) = password {
            cmd.args(["--requirepass", password]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed: `apt-get install redis-server` (./scripts/test installs it)");
        let redis = Redis { child, port, password: password.map(str::to_owned) };
        crate::wait_until(Duration::from_secs(20), "Redis to accept connections", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(drop)
        });
        redis
    }

    /// `redis://127.0.0.1:PORT`, with `:PASSWORD@` when it has one.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it and waits until it is gone.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
