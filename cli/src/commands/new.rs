//! `assegai new NAME`: scaffolds an agent from a template embedded in the binary (`templates/`).
//!
//! Nothing is built or fetched, so it takes milliseconds. The files are written into a staging
//! directory first and moved into place at the end, so a failure leaves no half-written project,
//! and an existing directory is used only when it is empty.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};

use crate::{
    cli::{NewArgs, Template},
    printer::{Printer, shell_quote},
};

/// A template file: its path in the new project, and its text with `{{placeholders}}`.
type TemplateFile = (&'static str, &'static str);

macro_rules! template {
    ($dir:literal: $($path:literal),+ $(,)?) => {
        &[$(($path, include_str!(concat!("../../../templates/", $dir, "/", $path)))),+]
    };
}

const RUST: &[TemplateFile] = template!("rust": "Cargo.toml", "src/main.rs", "assegai.json", "README.md", ".gitignore");
/// Where the Rust template's copy of the SDK goes, as its `Cargo.toml` names it.
const SDK_DIR: &str = "vendor/assegai-sdk";
/// The versions this workspace was built and tested with: the agent starts from them instead of
/// whatever the registry holds the day it is first built (Cargo drops what it does not use).
const LOCKFILE: &str = include_str!("../../../Cargo.lock");

include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));
const NODE: &[TemplateFile] =
    template!("node": "package.json", "index.js", "sdk.js", "assegai.json", "README.md", ".gitignore");
const PYTHON: &[TemplateFile] =
    template!("python": "main.py", "assegai_sdk.py", "assegai.json", "README.md", ".gitignore");

/// Longest agent name, as the manifest allows.
const MAX_NAME_CHARS: usize = 64;

pub fn run(args: &NewArgs, printer: Printer) -> anyhow::Result<()> {
    validate_name(&args.name)?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    let (files, template_name) = match args.template {
        Template::Rust => (RUST, "rust"),
        Template::Node => (NODE, "node"),
        Template::Python => (PYTHON, "python"),
    };
    let vars = [
        ("{{name}}", args.name.clone()),
        ("{{package_name}}", args.name.to_ascii_lowercase()),
        ("{{sdk_dir}}", SDK_DIR.to_owned()),
    ];
    let mut rendered: Vec<(String, String)> = files
        .iter()
        .map(|(path, text)| {
            ((*path).to_owned(), vars.iter().fold((*text).to_owned(), |t, (key, value)| t.replace(key, value)))
        })
        .collect();
    let shown: Vec<String> = rendered.iter().map(|(path, _)| path.clone()).collect();
    if args.template == Template::Rust {
        rendered.push(("Cargo.lock".to_owned(), LOCKFILE.to_owned()));
        rendered.extend(SDK_FILES.iter().map(|(path, text)| (format!("{SDK_DIR}/{path}"), (*text).to_owned())));
    }

    create_project(&dir, &rendered)?;

    printer.success(format!("Created agent `{}` in `{}` from the {template_name} template", args.name, dir.display()));
    printer.info(format!("  {}", shown.join(", ")));
    if args.template == Template::Rust {
        printer.info(format!(
            "  with Cargo.lock and a copy of assegai-sdk {} in {SDK_DIR}, so it builds offline and anywhere",
            env!("CARGO_PKG_VERSION")
        ));
    }
    let run = format!("`assegai run {}`", shell_quote(&dir.display().to_string()));
    let what = if args.template == Template::Rust { "builds and starts it" } else { "starts it" };
    // What `run` does: it asks in its own terminal when it has one, else `assegai approve` does.
    printer.info(format!("Next: {run} {what} (and the proxy, if none is running)."));
    printer.info(
        "  When the agent asks for its transfer, `run` shows the request and asks you right there; \
         without a terminal (or with `--no-prompt`) decide with `assegai approve` in another one.",
    );
    Ok(())
}

/// Letters, digits, `-` and `_`, starting with a letter, at most 64 characters: a valid Cargo
/// package, npm package and directory name alike.
fn validate_name(name: &str) -> anyhow::Result<()> {
    let problem = match name.chars().next() {
        None => "it is empty".to_owned(),
        Some(_) if name.chars().count() > MAX_NAME_CHARS => {
            format!("it is {} characters long, and at most {MAX_NAME_CHARS} are allowed", name.chars().count())
        }
        Some(first) if !first.is_ascii_alphabetic() => format!("it starts with `{}`", first.escape_debug()),
        Some(_) => match name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))) {
            Some(c) => format!("`{}` is not allowed", c.escape_debug()),
            None => return Ok(()),
        },
    };
    let shown: String = name.chars().take(MAX_NAME_CHARS).collect::<String>().escape_debug().to_string();
    bail!(
        "invalid agent name `{shown}`: {problem}; a name has letters, digits, `-` and `_`, and starts with a letter \
         (e.g. `price-watcher`)"
    )
}

/// Writes `files` into `dir`, which must not exist or be an empty directory. Everything is written
/// into a staging directory first; only complete projects are moved into place.
fn create_project(dir: &Path, files: &[(String, String)]) -> anyhow::Result<()> {
    let shown = dir.display();
    let existing_empty = match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let mut entries = fs::read_dir(dir).with_context(|| format!("reading `{shown}`"))?;
            if entries.next().is_some() {
                bail!("`{shown}` already exists and is not empty; pick another name or `--dir`, or remove it first");
            }
            true
        }
        Ok(_) => bail!("`{shown}` already exists and is not a directory; pick another name or `--dir`"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("checking `{shown}`")),
    };

    let unique = format!(
        ".assegai-new-{}-{}",
        std::process::id(),
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or_default()
    );
    // Staging on the same file system as the destination, so that moving it in is a rename.
    let staging = if existing_empty {
        dir.join(&unique)
    } else {
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fs::create_dir_all(parent).with_context(|| format!("creating `{}`", parent.display()))?;
        parent.join(&unique)
    };
    let staging = Staging::create(staging)?;
    for (path, text) in files {
        let target = staging.path().join(path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating `{}`", parent.display()))?;
        }
        fs::write(&target, text).with_context(|| format!("writing `{}`", target.display()))?;
    }

    if existing_empty { staging.move_entries_into(dir) } else { staging.rename_to(dir) }
}

/// A directory that is removed, with whatever is in it, unless it was moved into place.
struct Staging {
    path: Option<PathBuf>,
}

impl Staging {
    fn create(path: PathBuf) -> anyhow::Result<Self> {
        fs::create_dir(&path).with_context(|| format!("creating `{}`", path.display()))?;
        Ok(Staging { path: Some(path) })
    }

    fn path(&self) -> &Path {
        self.path.as_deref().expect("present until consumed")
    }

    /// Renames the staging directory to `dir` (which does not exist).
    fn rename_to(mut self, dir: &Path) -> anyhow::Result<()> {
        let from = self.path.take().expect("present until consumed");
        if let Err(e) = fs::rename(&from, dir) {
            self.path = Some(from);
            if dir.exists() {
                bail!("`{}` appeared while the project was being written; nothing was changed there", dir.display());
            }
            return Err(e).with_context(|| format!("moving the new project to `{}`", dir.display()));
        }
        Ok(())
    }

    /// Moves each top-level entry into the empty directory `dir` (which is kept, not replaced: it
    /// may be the current directory of a shell). On failure, what was moved is moved back.
    fn move_entries_into(self, dir: &Path) -> anyhow::Result<()> {
        let entries: Vec<_> = fs::read_dir(self.path())
            .and_then(|rd| rd.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>())
            .with_context(|| format!("reading `{}`", self.path().display()))?;
        let mut moved = Vec::new();
        for name in &entries {
            if let Err(e) = fs::rename(self.path().join(name), dir.join(name)) {
                for back in moved.iter().rev() {
                    let _ = fs::rename(dir.join(back), self.path().join(back));
                }
                return Err(e).with_context(|| format!("moving the new project into `{}`", dir.display()));
            }
            moved.push(name);
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = fs::remove_dir_all(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "price-watcher", "Agent_2", "x".repeat(64).as_str()] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in
            ["", "2fast", "-x", "_x", "has space", "dot.ted", "slash/y", "émile", "a\u{1b}[2J", "x".repeat(65).as_str()]
        {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        let msg = validate_name("a\u{1b}[2J").unwrap_err().to_string();
        assert!(!msg.contains('\u{1b}'), "control characters are escaped: {msg}");
    }

    #[test]
    fn every_placeholder_is_known() {
        let known = ["{{name}}", "{{package_name}}", "{{sdk_dir}}"];
        for (path, text) in RUST.iter().chain(NODE).chain(PYTHON) {
            let mut rest = *text;
            while let Some(i) = rest.find("{{") {
                let end = rest[i..].find("}}").map(|j| i + j + 2).unwrap_or(rest.len());
                assert!(known.contains(&&rest[i..end]), "{path}: unknown placeholder {}", &rest[i..end]);
                rest = &rest[end..];
            }
        }
    }
}
