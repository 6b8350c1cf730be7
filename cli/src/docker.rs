//! `assegai run --docker`: the agent in a hardened container, as the original product ran it —
//! read-only root filesystem, every capability dropped, `no-new-privileges`, the manifest's memory
//! and CPU limits, a per-agent workspace volume, and the proxy reached at `host.docker.internal`.
//!
//! Everything Docker-specific is the [`plan`] (which commands, with which flags) and one
//! [`Engine`] that either runs them or prints them (`--dry-run`), so the flags can be tested on a
//! machine without a Docker engine.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use assegai_proxy::{
    agents,
    ids::AgentId,
    manifest::{Manifest, Runtime},
};
use assegai_sdk::env;

use crate::{manifest_check, printer::Printer, runner, settings::Settings};

/// The port the proxy listens on, as containers reach it.
fn proxy_port(settings: &Settings) -> u16 {
    settings.config.listen.port()
}

/// One `docker` command line, and the variables it takes from its own environment (values never
/// appear on a command line, where other users could read them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The arguments after `docker`.
    pub args: Vec<String>,
    /// Variables passed through `-e NAME` from the `docker` process's environment.
    pub secret_env: Vec<(String, String)>,
}

/// What `run --docker` does: build the image, then run it hardened.
pub fn plan(
    dir: &Path,
    manifest: &Manifest,
    agent_id: &AgentId,
    dockerfile: &Path,
    workspace: &Path,
    port: u16,
) -> anyhow::Result<Vec<Step>> {
    let image = format!("assegai-agent-{}", agent_id.as_str().trim_start_matches("ag_").to_ascii_lowercase());
    let build = Step {
        args: vec![
            "build".into(),
            "--tag".into(),
            image.clone(),
            "--file".into(),
            dockerfile.display().to_string(),
            dir.display().to_string(),
        ],
        secret_env: Vec::new(),
    };
    let resources = manifest.resources.clone().unwrap_or_default();
    let memory = resources.memory.as_deref().map(runner::parse_memory).transpose()?.unwrap_or(512 << 20);
    let cpus = resources.cpu.clone().unwrap_or_else(|| "1".into());
    if cpus.parse::<f64>().map_or(true, |c| !(c > 0.0 && c <= 1024.0)) {
        bail!("`resources.cpu` \"{cpus}\" is not a CPU share such as \"0.5\" or \"2\"");
    }
    let mut run = vec![
        "run",
        "--rm",
        "--init",
        "--read-only",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--pids-limit=256",
        "--tmpfs=/tmp:rw,noexec,nosuid,size=64m",
        "--add-host=host.docker.internal:host-gateway",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    run.extend([
        format!("--name=assegai-{}", agent_id.as_str().to_ascii_lowercase().replace('_', "-")),
        format!("--memory={}m", memory >> 20),
        format!("--memory-swap={}m", memory >> 20),
        format!("--cpus={cpus}"),
        format!("--volume={}:/workspace:rw", workspace.display()),
        "--workdir=/workspace".into(),
        format!("--env={}=http://host.docker.internal:{port}", env::API_PROXY),
        format!("--env={}={agent_id}", env::AGENT_ID),
        format!("--env={}=/workspace", env::WORKSPACE),
        "--env=HOME=/workspace".into(),
        format!("--env={}", env::AGENT_TOKEN),
        image,
    ]);
    Ok(vec![build, Step { args: run, secret_env: Vec::new() }])
}

/// Runs `docker` steps, or shows them.
pub trait Engine {
    /// Carries out one step.
    fn run(&self, step: &Step) -> anyhow::Result<()>;
}

/// Prints each command as a shell line, secrets named but not shown.
pub struct DryRun(pub Printer);

impl Engine for DryRun {
    fn run(&self, step: &Step) -> anyhow::Result<()> {
        let quoted: Vec<String> = step.args.iter().map(|a| shell_quote(a)).collect();
        self.0.data(format!("docker {}", quoted.join(" ")));
        Ok(())
    }
}

/// The real Docker CLI.
pub struct Docker;

impl Engine for Docker {
    fn run(&self, step: &Step) -> anyhow::Result<()> {
        let status = std::process::Command::new("docker")
            .args(&step.args)
            .envs(step.secret_env.iter().map(|(k, v)| (k, v)))
            .status()
            .context("running `docker` (is Docker installed and on PATH?)")?;
        if !status.success() {
            bail!("`docker {}` failed ({status})", step.args.first().map_or("", String::as_str));
        }
        Ok(())
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=./:,@+%".contains(&b)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A Dockerfile for the agent's runtime, used when the agent has none of its own.
pub fn generated_dockerfile(runtime: Runtime, manifest: &Manifest) -> anyhow::Result<String> {
    let entry = manifest.entrypoint.clone();
    Ok(match runtime {
        Runtime::Rust => "FROM rust:1-slim AS build\nWORKDIR /src\nCOPY . .\nRUN cargo build --release && \
             find target/release -maxdepth 1 -type f -perm -u+x -exec cp {} /agent \\;\n\
             FROM debian:bookworm-slim\nRUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*\n\
             COPY --from=build /agent /usr/local/bin/agent\nUSER 65534:65534\nENTRYPOINT [\"/usr/local/bin/agent\"]\n"
            .to_owned(),
        Runtime::Node => format!(
            "FROM node:20-slim\nWORKDIR /app\nCOPY . .\nRUN npm install --omit=dev --no-audit --no-fund\nUSER node\nENTRYPOINT [\"node\", \"/app/{}\"]\n",
            entry.unwrap_or_else(|| "index.js".into())
        ),
        Runtime::Python => format!(
            "FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\nRUN if [ -f requirements.txt ]; then pip install --no-cache-dir -r requirements.txt; fi\nUSER 65534:65534\nENTRYPOINT [\"python3\", \"-u\", \"/app/{}\"]\n",
            entry.unwrap_or_else(|| "main.py".into())
        ),
        Runtime::Command => bail!("an agent with runtime \"command\" needs its own Dockerfile for --docker"),
    })
}

/// `assegai run DIR --docker [--dry-run]`.
pub async fn run(
    dir: &Path,
    manifest: &Manifest,
    settings: &Settings,
    dry_run: bool,
    accept_manifest: bool,
    printer: Printer,
) -> anyhow::Result<()> {
    let runtime = manifest.runtime.unwrap_or(Runtime::Command);
    let store = settings.store()?;
    // A dry run changes nothing: an agent not registered yet is shown with a placeholder id.
    let known = store.list_agents()?.into_iter().find(|a| a.source_dir.as_deref() == Some(&dir.display().to_string()));
    let (agent_id, token) = if dry_run {
        (known.map_or_else(|| AgentId::from("ag_new"), |a| a.id), None)
    } else {
        // As without --docker: the file may grant more than the person registered.
        let origin = manifest_check::Origin::Run(dir);
        manifest_check::settle(&store, &manifest.name, origin, manifest, accept_manifest, printer).await?;
        let r = agents::register(&store, &manifest.name, manifest, Some(dir))?;
        settings.admin().agent_changed(&r.id).await.ok();
        (r.id, Some(r.token))
    };
    let workspace = settings.home.workspace(&agent_id);
    let own = dir.join("Dockerfile");
    let dockerfile: PathBuf = if own.is_file() {
        own
    } else {
        let text = generated_dockerfile(runtime, manifest)?;
        let path = settings.home.root().join("dockerfiles").join(format!("{agent_id}.Dockerfile"));
        if dry_run {
            printer.info(format!("# generated {} ({runtime:?} runtime):", path.display()));
            for line in text.lines() {
                printer.info(format!("#   {line}"));
            }
        } else {
            std::fs::create_dir_all(path.parent().expect("a parent")).context("creating the dockerfiles directory")?;
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        path
    };
    if !dry_run {
        std::fs::create_dir_all(&workspace).context("creating the agent's workspace")?;
    }
    let mut steps = plan(dir, manifest, &agent_id, &dockerfile, &workspace, proxy_port(settings))?;
    if settings.config.listen.ip().is_loopback() {
        printer.warn(format!(
            "the proxy listens on {}, which containers cannot reach; set `listen` in config.toml to the Docker bridge address (e.g. \"172.17.0.1:{}\")",
            settings.config.listen,
            proxy_port(settings)
        ));
    }
    if let Some(token) = token {
        steps.last_mut().expect("a run step").secret_env.push((env::AGENT_TOKEN.into(), token));
    } else {
        printer.info(format!("# {} is passed from docker's environment, never on its command line", env::AGENT_TOKEN));
    }
    let engine: Box<dyn Engine> = if dry_run { Box::new(DryRun(printer)) } else { Box::new(Docker) };
    for step in &steps {
        engine.run(step)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_step_is_hardened() {
        let m = Manifest::parse(
            r#"{"name":"x","runtime":"node","resources":{"memory":"256MB","cpu":"0.5"}}"#,
            Path::new("assegai.json"),
        )
        .unwrap();
        let steps = plan(Path::new("/a"), &m, &AgentId::from("ag_AB"), Path::new("/d"), Path::new("/w"), 8765).unwrap();
        let run = &steps[1].args;
        for flag in [
            "--read-only",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            "--memory=256m",
            "--cpus=0.5",
            "--add-host=host.docker.internal:host-gateway",
            "--volume=/w:/workspace:rw",
            "--env=ASSEGAI_API_PROXY=http://host.docker.internal:8765",
            "--env=ASSEGAI_AGENT_TOKEN",
        ] {
            assert!(run.iter().any(|a| a == flag), "{flag} missing from {run:?}");
        }
        assert_eq!(shell_quote("a b'c"), r"'a b'\''c'");
    }
}
