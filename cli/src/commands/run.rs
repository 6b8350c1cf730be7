//! `assegai run DIR`: validate the manifest, build, register (same directory, same agent id; a
//! fresh token each run), make sure a proxy is there (starting one in-process if none runs), and
//! run the agent with nothing but its id and token (see `runner`), until it exits or Ctrl-C.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use assegai_proxy::{agents, chain::ChainClient, manifest::Manifest, sanitize::neutralize, server, upstream::Upstream};
use console::style;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cli::RunArgs,
    commands::{
        approve::{self, QueueOptions},
        proxy::open_keys,
    },
    docker, engine_log,
    printer::Printer,
    runner::{self, AgentEnv},
    sandbox,
    settings::Settings,
};

pub async fn run(args: &RunArgs, settings: Settings, printer: Printer) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    // The agent's output is what this command shows; the engine's lines go to a file.
    settings.home.ensure()?;
    engine_log::to_file(settings.home.root()).context("opening proxy.log in the home")?;
    // First, so that a Ctrl-C during the build or start-up is ours to handle.
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the Ctrl-C handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("no agent directory at {}; create one with `assegai new NAME`", args.dir.display()))?;
    let manifest = Manifest::load(&dir)?;
    agents::validate_name(&manifest.name)?;
    let memory = manifest.resources.as_ref().and_then(|r| r.memory.as_deref()).map(runner::parse_memory).transpose()?;
    if args.docker {
        return docker::run(&dir, &manifest, &settings, args.dry_run, args.accept_manifest, printer).await;
    }
    let confine = sandbox_or_refuse(args.no_sandbox, printer)?;
    // Before any agent code runs (its build included): whatever it starts stays in this process's
    // tree, and the admin API refuses that tree.
    runner::become_subreaper()?;
    let _runner_mark = assegai_proxy::runners::RunnerMark::announce(&settings.home.runners_dir())?;
    // The file may grant more than the person registered: only they can widen it. Asked before
    // the build (which the file also decides) and before a passphrase prompt could share the
    // terminal.
    let store = settings.store()?;
    let origin = crate::manifest_check::Origin::Run(&dir);
    crate::manifest_check::settle(&store, &manifest.name, origin, &manifest, args.accept_manifest, printer).await?;

    let running = settings.admin().status().await;
    // Opening an encrypted key file derives its key (Argon2id, over 100 ms): done beside the build
    // unless it must ask for the passphrase, which cannot share the terminal with a spinner.
    let keys = match &running {
        Some(_) => None,
        None if settings.may_prompt_for_keys() => {
            let keys = open_keys(&settings, printer);
            Some(tokio::spawn(async move { keys }))
        }
        None => {
            let settings = settings.clone();
            Some(tokio::task::spawn_blocking(move || open_keys(&settings, printer)))
        }
    };

    // Build before registering: a failed build leaves nothing behind.
    let program = tokio::select! {
        program = runner::build(&dir, &manifest, settings.home.root(), confine, printer) => program?,
        _ = interrupt.recv() => bail!("stopped during the build; nothing was registered"),
        _ = term.recv() => bail!("stopped during the build; nothing was registered"),
    };

    // The key store the embedded proxy signs from, for the card to name the wallet.
    let mut signing_keys = None;
    let (proxy_url, embedded) = match (running, keys) {
        (Some(status), _) => (agent_url(status.listen.parse().ok()), None),
        (None, keys) => {
            let keys = match keys {
                Some(task) => task.await.context("opening the key store")?,
                None => open_keys(&settings, printer),
            };
            signing_keys = keys.as_ref().ok().cloned();
            let config = settings.config.clone();
            let proxy = match server::start(&settings.home, config.clone(), keys.clone()).await {
                Err(assegai_proxy::Error::Bind { addr, .. }) => {
                    printer.warn(format!("{addr} is in use; the proxy listens on another port for this run"));
                    let mut any_port = config;
                    any_port.listen.set_port(0);
                    server::start(&settings.home, any_port, keys).await?
                }
                other => other?,
            };
            (agent_url(Some(proxy.addr())), Some(proxy))
        }
    };
    if engine_log::checking(check_local_chains(&settings, &manifest, printer)).await {
        // Said in plain words with the fix; the engine's "upstream request failed" would repeat it.
        engine_log::already_told();
    }

    let registered = agents::register(&store, &manifest.name, &manifest, Some(&dir))?;
    if embedded.is_none() {
        // The running proxy may have cached the previous token.
        settings.admin().agent_changed(&registered.id).await.ok();
    }
    let token_hash = assegai_proxy::auth::hash_token(&registered.token);
    let workspace = settings.home.workspace(&registered.id);
    create_private_dir(&workspace)?;
    // Its own temporary directory, gone with the run (the system's /tmp is outside the sandbox).
    let tmp = tempfile::Builder::new()
        .prefix(&format!("assegai-{}-", registered.id))
        .tempdir()
        .context("creating the agent's temporary directory")?;
    let rules = if confine {
        runner::agent_rules(&program, &dir, &workspace, tmp.path(), settings.home.root(), memory)?
    } else {
        let mut open = sandbox::Rules::unconfined();
        open.data_limit(memory);
        open
    };
    let vars = AgentEnv {
        proxy_url: proxy_url.clone(),
        agent_id: registered.id.to_string(),
        token: registered.token,
        workspace,
        tmp: tmp.path().to_owned(),
    }
    .vars(&program.program);
    let name = neutralize(&registered.name);
    printer.info(format!(
        "{} agent {} ({}) with proxy {}; Ctrl-C stops it",
        style("Running").green().bold(),
        style(&name).bold(),
        registered.id,
        proxy_url
    ));
    // Asked inline unless a person already has `assegai approve` open for this agent: two prompts
    // for one request would race. Said before the agent starts, so its output comes after.
    let elsewhere = approve::approver_attached(&settings, &registered.id);
    let inline = !elsewhere && !args.no_prompt && printer.interactive();
    if inline {
        printer.info("Transaction requests will be asked here.");
    } else if elsewhere {
        printer.info("Transaction requests go to the `assegai approve` already open in another terminal.");
    } else {
        printer.info(format!(
            "Approve or reject its transaction requests in another terminal with `{}`.",
            settings.command(&format!("approve --agent {}", registered.id))
        ));
    }
    let mut child = runner::spawn(&program, &dir, &vars, &rules)?;
    drop(vars);
    // The agent leads a process group of its own: the id to stop it and whatever it starts.
    let group = child.id();
    // Its output and what it logs through the proxy, each line prefixed with its name (the
    // templates log without printing, so nothing shows twice).
    let outputs = [
        runner::forward_lines(child.stdout.take().expect("piped"), &registered.name, false, printer),
        runner::forward_lines(child.stderr.take().expect("piped"), &registered.name, true, printer),
    ];
    let logged = match &embedded {
        Some(proxy) => runner::forward_logs(proxy.subscribe_logs(), &registered.id, &registered.name, printer),
        None => runner::follow_logs(settings.store()?, &registered.id, &registered.name, printer)?,
    };
    let (stop_queue, queue_stopped) = tokio::sync::watch::channel(false);
    let mut approvals = inline.then(|| {
        let settings = settings.clone();
        let options = QueueOptions {
            agent_id: Some(registered.id.clone()),
            inline: true,
            stop: Some(queue_stopped),
            once: false,
            keys: signing_keys,
        };
        tokio::spawn(async move { approve::queue(&settings, printer, &options).await })
    });
    let queue_ended = async {
        match approvals.as_mut() {
            Some(task) => drop(task.await),
            None => std::future::pending().await,
        }
    };

    let grace = Duration::from_secs(args.grace);
    let stopping = format!("Stopping {name} (SIGTERM; SIGKILL after {} s)…", args.grace);
    let (status, stopped_by_us) = tokio::select! {
        status = child.wait() => (status.context("waiting for the agent")?, false),
        _ = interrupt.recv() => {
            printer.info(stopping);
            (runner::stop(&mut child, group, grace).await?, true)
        }
        _ = term.recv() => (runner::stop(&mut child, group, grace).await?, true),
        // The person quit the inline prompt (Esc, q, Ctrl-C read as a key): they are done.
        () = queue_ended => {
            printer.info(stopping);
            (runner::stop(&mut child, group, grace).await?, true)
        }
    };
    // Whatever the agent left running goes with it (and lets go of its output pipes), and its
    // token with them: nothing of the agent outlives its run.
    runner::end_tree(tokio::time::Instant::now() + grace).await;
    if let Err(e) = store.revoke_token(&registered.id, &token_hash, "its run ended") {
        printer.warn(format!("could not revoke the agent's token: {e}"));
    }
    settings.admin().agent_changed(&registered.id).await.ok();
    // Let the last lines through before reporting.
    for o in outputs {
        let _ = tokio::time::timeout(Duration::from_secs(2), o).await;
    }
    // What it logged last is in the store (or the proxy's queue to it) by now or soon after.
    let _ = tokio::time::timeout(Duration::from_secs(1), logged.finish()).await;
    let _ = stop_queue.send(true);
    if let Some(queue) = approvals.filter(|q| !q.is_finished()) {
        if crate::printer::prompt_open() {
            printer.info("The agent has ended; answer the request on screen (or press Esc) to finish.");
        }
        let _ = queue.await;
    }
    if let Some(proxy) = embedded {
        proxy.stop().await;
    }
    let how = runner::describe_exit(status);
    if status.success() || stopped_by_us {
        printer.success(format!("Agent {name} {how}."));
        Ok(())
    } else {
        bail!("agent {name} {how}; its output is above")
    }
}

/// Whether to confine the agent; refuses when the kernel cannot and `--no-sandbox` was not given.
fn sandbox_or_refuse(no_sandbox: bool, printer: Printer) -> anyhow::Result<bool> {
    if no_sandbox {
        printer.warn(
            "--no-sandbox: the agent and its build run unconfined. They can read and write everything you can: \
             the assegai home (database, keys.enc, admin.token, other agents' workspaces), your home, the system's /tmp. \
             Its environment stays exactly its own, and the admin API still refuses it (it descends from this run).",
        );
        return Ok(false);
    }
    match sandbox::probe() {
        sandbox::Support::Available { .. } => Ok(true),
        unavailable => bail!(
            "cannot confine the agent: {}. Run it in a container with `assegai run --docker`, or, for an agent you trust, \
             unconfined with `--no-sandbox`",
            unavailable.describe()
        ),
    }
}

/// The URL an agent on this machine uses for a proxy listening on `addr`.
fn agent_url(addr: Option<SocketAddr>) -> String {
    let mut addr = addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8765)));
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    format!("http://{addr}")
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the agent's workspace {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))
}

/// Says so when a local chain the agent uses does not answer, and how to start one; whether it
/// warned.
pub async fn check_local_chains(settings: &Settings, manifest: &Manifest, printer: Printer) -> bool {
    let Ok(upstream) = Upstream::new(&settings.config) else { return false };
    let mut warned = false;
    let chain = ChainClient::new(upstream, Arc::new(settings.config.clone()));
    for id in manifest.permissions.chains.iter().filter(|c| c.is_local()) {
        let Ok(url) = chain.rpc_url(manifest, *id) else { continue };
        let answer = tokio::time::timeout(
            Duration::from_secs(3),
            chain.query(url.clone(), "eth_chainId", &serde_json::json!([])),
        )
        .await;
        match answer {
            Ok(Ok(raw)) => {
                let got: Option<String> = serde_json::from_str(raw.get()).ok();
                let got = got.and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok());
                if got.is_some_and(|g| g != id.id()) {
                    warned = true;
                    printer.warn(format!(
                        "the node at {url} is chain {}, not {id} as the manifest says",
                        got.unwrap_or_default()
                    ));
                }
            }
            Ok(Err(e)) => {
                warned = true;
                printer.warn(format!(
                    "the local chain {id} at {url} does not answer ({e}); start one in another terminal with `anvil`, or set `local_rpc_url` in config.toml"
                ));
            }
            Err(_) => {
                warned = true;
                printer.warn(format!(
                    "the local chain {id} at {url} did not answer within 3 s; start one in another terminal with `anvil`"
                ));
            }
        }
    }
    warned
}
