//! Confinement of agent code — the agent itself and its build — with Landlock.
//!
//! `run` does not restrict itself: it starts `assegai __sandbox RULES -- PROGRAM ARGS`, a
//! trampoline that restricts itself, sets the resource limits and `exec`s the program. Nothing
//! runs between fork and exec in the parent (no `pre_exec`, no `unsafe`), and what the agent
//! inherits is exactly the ruleset, the limits and the environment the parent chose.
//!
//! What a confined process may touch is decided here and nowhere else: read and execute the
//! system's directories and the few files of `/etc` that name resolution and TLS read, plus what
//! the caller adds (the agent's directory, its interpreter's prefix); read and write only what the
//! caller adds (the workspace and a private `TMPDIR`). Where the kernel's Landlock ABI has them
//! (≥ 6), signals and abstract Unix sockets are scoped too, so the agent can neither signal the
//! proxy nor reach an abstract socket outside its sandbox. A sandboxed process cannot ptrace a
//! process outside its domain, and other processes' `/proc/<pid>` is not among its paths.

use std::{
    ffi::{OsStr, OsString},
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
    path_beneath_rules,
};

/// The hidden first argument that makes `assegai` the trampoline.
pub const TRAMPOLINE: &str = "__sandbox";
/// Makes the probe report a kernel without Landlock (tests only: the refusal and `--no-sandbox`
/// cannot otherwise be exercised on a kernel that has it).
pub const FORCE_NO_LANDLOCK: &str = "ASSEGAI_TEST_FORCE_NO_LANDLOCK";
/// The newest ABI whose rights this code was written and tested against: newer kernels' rights
/// are not asked for until they are reviewed (the crate's advice).
const ABI_TARGET: ABI = ABI::V6;

/// Read and execute, for the system's programs and libraries.
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/nix/store"];
/// What name resolution, TLS, users and time zones read of `/etc` (not `/etc` as a whole: as
/// root that would include `/etc/shadow`).
const ETC_FILES: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/passwd",
    "/etc/group",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/mime.types",
    "/etc/os-release",
    "/run/systemd/resolve",
];
/// Kernel-provided views runtimes read (CPU count, memory, cgroup limits). Not `/proc` as a
/// whole: Landlock's ptrace scoping does not cover reading another process's
/// `/proc/<pid>/environ` (seen on Linux 6.18), and root reads every process's. `/proc/self` is
/// resolved when the rules are applied, in the process that becomes the agent: the agent sees its
/// own `/proc/<pid>`, and no other process's.
const KERNEL_VIEWS: &[&str] = &[
    "/proc/self",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/cpuinfo",
    "/proc/loadavg",
    "/proc/uptime",
    "/proc/version",
    "/proc/filesystems",
    "/proc/sys/kernel",
    "/proc/sys/vm",
    "/sys/fs/cgroup",
    "/sys/devices/system/cpu",
];
/// Devices a program may open for reading and writing.
const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"];

/// What the kernel offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// Landlock confines files; `scoped`: signals and abstract sockets too (ABI ≥ 6).
    Available { scoped: bool },
    /// No Landlock: why.
    Unavailable(String),
}

impl Support {
    /// One line for `doctor` and the refusal.
    pub fn describe(&self) -> String {
        match self {
            Support::Available { scoped: true } => {
                "Landlock confines agents' files, signals and abstract sockets".to_owned()
            }
            Support::Available { scoped: false } => "Landlock confines agents' files (this kernel's Landlock is older \
                 than ABI 6: signals and abstract sockets are not scoped)"
                .to_owned(),
            Support::Unavailable(why) => format!("no Landlock on this kernel ({why})"),
        }
    }
}

/// Asks the kernel, through the landlock crate, what it can enforce: a ruleset is created (never
/// applied) with each feature as a hard requirement.
pub fn probe() -> Support {
    if std::env::var_os(FORCE_NO_LANDLOCK).is_some_and(|v| !v.is_empty()) {
        return Support::Unavailable(format!("{FORCE_NO_LANDLOCK} is set"));
    }
    let files = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .and_then(|r| r.create());
    if let Err(e) = files {
        return Support::Unavailable(e.to_string());
    }
    let scoped = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .scope(Scope::from_all(ABI::V6))
        .and_then(|r| r.create())
        .is_ok();
    Support::Available { scoped }
}

/// What a confined process may touch, and its limits.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
    data_limit: Option<u64>,
    confine: bool,
}

impl Rules {
    /// The system's directories readable, nothing writable yet.
    pub fn system() -> Self {
        let mut rules = Rules { confine: true, ..Rules::default() };
        for p in SYSTEM_DIRS.iter().chain(ETC_FILES).chain(KERNEL_VIEWS) {
            rules.read.push(PathBuf::from(p));
        }
        rules.write.extend(DEVICES.iter().map(PathBuf::from));
        rules
    }

    /// No file rules at all (`--no-sandbox`): the trampoline then only sets the limits.
    pub fn unconfined() -> Self {
        Rules::default()
    }

    /// Lets the process read (and execute) `path` and what is beneath it.
    pub fn read(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.read.push(path.into());
        self
    }

    /// Lets the process read, write, create and remove `path` and what is beneath it.
    pub fn write(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.write.push(path.into());
        self
    }

    /// Caps the process's data segment (RLIMIT_DATA rather than RLIMIT_AS: runtimes such as V8
    /// reserve far more address space than they ever use, which an address-space cap refuses).
    pub fn data_limit(&mut self, bytes: Option<u64>) -> &mut Self {
        self.data_limit = bytes;
        self
    }

    /// A command that runs `program` under these rules (through the trampoline). The caller
    /// sets its environment, directory and stdio.
    pub fn command(&self, program: &Path, args: &[OsString]) -> anyhow::Result<tokio::process::Command> {
        let me = std::env::current_exe().context("finding the assegai executable for the sandbox")?;
        let mut cmd = tokio::process::Command::new(me);
        cmd.arg(TRAMPOLINE);
        if self.confine {
            cmd.arg("--confine");
        }
        for p in &self.read {
            cmd.arg("--read").arg(p);
        }
        for p in &self.write {
            cmd.arg("--write").arg(p);
        }
        if let Some(bytes) = self.data_limit {
            cmd.arg("--data-limit").arg(bytes.to_string());
        }
        cmd.arg("--").arg(program).args(args);
        Ok(cmd)
    }

    /// The inverse of [`Rules::command`]: the rules and the program line.
    fn parse(args: &[OsString]) -> anyhow::Result<(Rules, &[OsString])> {
        let mut rules = Rules::default();
        let mut i = 0;
        while i < args.len() {
            let flag = args[i].to_str().unwrap_or_default();
            let value = || args.get(i + 1).with_context(|| format!("{flag} needs a value"));
            match flag {
                "--" => return Ok((rules, &args[i + 1..])),
                "--confine" => {
                    rules.confine = true;
                    i += 1;
                    continue;
                }
                "--read" => rules.read.push(PathBuf::from(value()?)),
                "--write" => rules.write.push(PathBuf::from(value()?)),
                "--data-limit" => {
                    rules.data_limit =
                        Some(value()?.to_str().and_then(|v| v.parse().ok()).context("bad --data-limit")?);
                }
                other => bail!("unknown sandbox argument `{other}`"),
            }
            i += 2;
        }
        bail!("no program after `--`")
    }

    /// Restricts the calling process (for good) to these rules.
    fn apply(&self) -> anyhow::Result<()> {
        if let Some(bytes) = self.data_limit {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_DATA, bytes, bytes)
                .context("setting the memory limit")?;
        }
        if !self.confine {
            return Ok(());
        }
        let existing = |paths: &[PathBuf]| paths.iter().filter(|p| p.exists()).cloned().collect::<Vec<_>>();
        let status = Ruleset::default()
            .handle_access(AccessFs::from_all(ABI_TARGET))?
            .scope(Scope::from_all(ABI_TARGET))?
            .create()?
            .add_rules(path_beneath_rules(existing(&self.read), AccessFs::from_read(ABI_TARGET)))?
            .add_rules(path_beneath_rules(existing(&self.write), AccessFs::from_all(ABI_TARGET)))?
            .restrict_self()?;
        if status.ruleset == RulesetStatus::NotEnforced {
            bail!("the kernel did not enforce the Landlock ruleset");
        }
        Ok(())
    }
}

/// The trampoline: `args` are what follows [`TRAMPOLINE`]. Returns only on failure (the caller
/// reports it and exits with 126, as a shell does for a program it cannot run).
pub fn trampoline(args: &[OsString]) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let (rules, line) = match Rules::parse(args) {
        Ok(parsed) => parsed,
        Err(e) => return e,
    };
    let Some((program, rest)) = line.split_first() else { return anyhow::anyhow!("no program to run") };
    // A session of its own, with no controlling terminal: the agent (or its build) cannot open
    // `/dev/tty` to draw over the approval card `run` shows there, or read the person's keys,
    // even with `--no-sandbox`. Its process group is then its own too (pgid = pid), which is what
    // `run` signals to stop it, and a Ctrl-C at the terminal reaches only `run`.
    if let Err(e) = nix::unistd::setsid() {
        return anyhow::Error::new(e).context("leaving the terminal's session");
    }
    if let Err(e) = rules.apply() {
        return e.context("confining the agent");
    }
    let err = std::process::Command::new(program).args(rest).exec();
    anyhow::Error::new(err).context(format!("starting {}", Path::new(program).display()))
}

/// Whether `args` (the whole command line) asks for the trampoline.
pub fn is_trampoline(args: &[OsString]) -> bool {
    args.get(1).map(OsString::as_os_str) == Some(OsStr::new(TRAMPOLINE))
}

/// What may be granted for reading around a program outside the system's directories: its
/// installation prefix (`…/bin/node` → `…`), else its directory, else the file alone — whichever
/// is widest without containing any of `private` (the assegai home, the user's home).
pub fn program_prefix(program: &Path, private: &[PathBuf]) -> PathBuf {
    let dir = program.parent();
    let prefix = dir.filter(|d| d.file_name() == Some(OsStr::new("bin"))).and_then(Path::parent);
    let safe = |p: &Path| p.parent().is_some() && !private.iter().any(|x| x.starts_with(p));
    prefix.into_iter().chain(dir).find(|p| safe(p)).map_or_else(|| program.to_owned(), Path::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_survive_the_command_line() {
        let mut rules = Rules::system();
        rules.read("/agent dir").write("/w").data_limit(Some(64 << 20));
        let cmd = rules.command(Path::new("/bin/sh"), &["-c".into(), "echo".into()]).unwrap();
        let args: Vec<OsString> = cmd.as_std().get_args().map(OsStr::to_owned).collect();
        assert_eq!(args[0], TRAMPOLINE);
        let (parsed, line) = Rules::parse(&args[1..]).unwrap();
        assert!(parsed.confine);
        assert_eq!(parsed.read, rules.read);
        assert_eq!(parsed.write, rules.write);
        assert_eq!(parsed.data_limit, Some(64 << 20));
        assert_eq!(line, ["/bin/sh", "-c", "echo"]);
        let (open, _) = Rules::parse(&["--".into(), "x".into()]).unwrap();
        assert!(!open.confine, "confinement is asked for explicitly");
        for bad in [vec!["--read"], vec!["--data-limit", "x", "--", "p"], vec!["--what", "x"], vec![]] {
            let bad: Vec<OsString> = bad.into_iter().map(OsString::from).collect();
            assert!(Rules::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_prefix_never_contains_the_private_directories() {
        let private = ["/home/u", "/home/u/.local/share/assegai"].map(PathBuf::from);
        let p = |s: &str| program_prefix(Path::new(s), &private);
        assert_eq!(p("/home/u/.nvm/versions/node/v20/bin/node"), Path::new("/home/u/.nvm/versions/node/v20"));
        assert_eq!(p("/home/u/bin/tool"), Path::new("/home/u/bin"), "not the whole home");
        assert_eq!(p("/home/u/tool"), Path::new("/home/u/tool"), "only the file");
        assert_eq!(p("/bin/tool"), Path::new("/bin"), "never `/`");
        assert_eq!(p("/home/u/.local/share/x"), Path::new("/home/u/.local/share/x"));
    }
}
