//! Which processes are `assegai run` runners, so the admin API can refuse anything that descends
//! from one (an agent, or whatever it started).
//!
//! A runner announces itself with `$ASSEGAI_HOME/runners/<pid>`, holding its start time (so a
//! reused pid is not mistaken for it), and removes the file when it ends. The agent cannot
//! write there (the sandbox keeps it out of the home), and cannot leave the runner's process
//! tree (the runner is a child subreaper). The proxy reads the directory when an admin request
//! arrives, so runners that started before or after the proxy are seen alike.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A runner's announcement; removed on drop.
#[derive(Debug)]
pub struct RunnerMark {
    file: PathBuf,
}

impl RunnerMark {
    /// Announces the calling process as a runner in `dir` (`Home::runners_dir`).
    pub fn announce(dir: &Path) -> Result<Self> {
        let pid = std::process::id();
        let started = start_time(pid).ok_or_else(|| Error::Internal("cannot read /proc/self/stat".into()))?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let file = dir.join(pid.to_string());
        std::fs::write(&file, started.to_string()).map_err(|e| Error::io(&file, e))?;
        Ok(RunnerMark { file })
    }
}

impl Drop for RunnerMark {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The runner `pid` descends from, if any (the runner itself does not count: it is the user's
/// own `assegai run`, and its inline approval prompt calls the admin API).
pub fn runner_ancestor(dir: &Path, pid: u32) -> Option<u32> {
    let mut at = parent(pid)?;
    // Bounded: a pid loop cannot happen in /proc, but a bound costs nothing.
    for _ in 0..4096 {
        if at <= 1 {
            return None;
        }
        if is_runner(dir, at) {
            return Some(at);
        }
        at = parent(at)?;
    }
    None
}

fn is_runner(dir: &Path, pid: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join(pid.to_string())) else { return false };
    text.trim().parse::<u64>().ok().is_some_and(|t| start_time(pid) == Some(t))
}

/// Fields of `/proc/<pid>/stat` after the command name (which may hold spaces and parentheses).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The parent pid (field 4; index 1 after the name).
fn parent(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The start time in clock ticks since boot (field 22; index 19 after the name).
fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_of_a_runner_is_seen_and_the_runner_itself_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        assert_eq!(runner_ancestor(dir.path(), child.id()), None, "nobody announced");
        let mark = RunnerMark::announce(dir.path()).unwrap();
        assert_eq!(runner_ancestor(dir.path(), child.id()), Some(std::process::id()));
        assert_eq!(runner_ancestor(dir.path(), std::process::id()), None, "the runner itself");
        // A stale file for a pid that now belongs to another process does not count.
        std::fs::write(dir.path().join(std::process::id().to_string()), "1").unwrap();
        assert_eq!(runner_ancestor(dir.path(), child.id()), None);
        drop(mark);
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "the mark is removed");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
