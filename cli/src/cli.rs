//! Every flag and argument of `assegai`, and nothing else: behaviour lives in `commands/` and in
//! `assegai-proxy`.

use std::{net::SocketAddr, path::PathBuf};

use assegai_proxy::manifest::Provider;
use assegai_sdk::{LogLevel, env};
use clap::{Args, Parser, Subcommand};

/// Run AI agents that spend money and call paid APIs, without handing them a secret.
#[derive(Debug, Parser)]
#[command(name = "assegai", version, about, propagate_version = true, arg_required_else_help = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Directory holding Assegai's state [default: ~/.local/share/assegai]
    // Not clap's `env`: clap counts a value from the environment as typed, and then writes
    // `--home <DIR>` into every usage line as if it were required. `ASSEGAI_HOME` is read with
    // the other settings (`Settings::resolve`).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        value_hint = clap::ValueHint::DirPath,
        long_help = format!(
            "Directory holding Assegai's state: config.toml, the database, the key file, the admin socket\n\n\
             [env: {}] [default: ~/.local/share/assegai]",
            env::HOME
        )
    )]
    pub home: Option<PathBuf>,
    /// Print only data and errors
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy in the foreground (Ctrl-C stops it cleanly)
    Proxy(ProxyArgs),
    /// Register, list and remove agents
    Agents(AgentsArgs),
    /// Show agent logs
    Logs(LogsArgs),
    /// Review pending transaction requests
    Approve(ApproveArgs),
    /// Reject a pending transaction request
    Reject(RejectArgs),
    /// Transaction history
    Txs(TxsArgs),
    /// An agent's spending (settled and pending) against its limits
    Limits(LimitsArgs),
    /// Store, list, remove and test AI provider keys
    Keys(KeysArgs),
    /// AI calls, tokens and cost per agent, provider and model
    Usage(UsageArgs),
    /// Model prices used for AI cost
    Pricing(PricingArgs),
    /// The wallet that signs approved transactions
    Wallet(WalletArgs),
    /// Token allowances: how much of a token an agent may move per request
    Allowance(AllowanceArgs),
    /// Scaffold a new agent from a template
    New(NewArgs),
    /// Build and run an agent with only its id and token, the proxy started if none runs
    Run(RunArgs),
    /// Check the key store, the proxy, the local chain and the wallet, and say what to fix
    Doctor(JsonFlag),
    /// The settings in effect: config.toml's values, the defaults for the rest
    Config(JsonFlag),
    /// Print shell completions
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on [default: `listen` in config.toml, else 127.0.0.1:8765]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct AgentsArgs {
    #[command(subcommand)]
    pub command: Option<AgentsCommand>,
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List registered agents
    List(JsonFlag),
    /// One agent in full: what its manifest allows, its limits and allowances, its activity
    Show(AgentsShowArgs),
    /// Take back the ERC-20 approvals an agent's requests granted (queues approve(spender, 0)
    /// requests, each approved by you like any other)
    RevokeApprovals(AgentsShowArgs),
    /// Register an agent (or rotate its token) and print its id and token once
    Add(AgentsAddArgs),
    /// Remove an agent and revoke its token
    Remove(AgentsRemoveArgs),
    /// Kill switch: refuse every request of an agent (or all) and reject its pending transactions
    Pause(AgentsPauseArgs),
    /// Let a paused agent (or all) make requests again
    Resume(AgentsPauseArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["agent", "all"])))]
pub struct AgentsPauseArgs {
    /// The agent's name or id
    pub agent: Option<String>,
    /// Every agent
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON for scripts
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AgentsAddArgs {
    /// The agent's name
    pub name: String,
    /// Its manifest (assegai.json, or a directory holding one) [default: the local chain only]
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// Accept a manifest that grants more than the registered one without asking
    #[arg(long)]
    pub accept_manifest: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct AgentsShowArgs {
    /// The agent's name or id
    pub agent: String,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct AgentsRemoveArgs {
    /// The agent's name or id
    pub agent: String,
    /// Do not ask for confirmation
    #[arg(long, short)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only this agent (name or id)
    pub agent: Option<String>,
    /// Keep printing new lines as they arrive
    #[arg(long, short)]
    pub follow: bool,
    /// Only this level
    #[arg(long, value_name = "LEVEL")]
    pub level: Option<LogLevel>,
    /// How many of the newest lines to show first
    #[arg(long, short = 'n', default_value_t = 100)]
    pub lines: u32,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The request to approve (see `--list`); without it, an interactive queue of every request
    pub id: Option<String>,
    /// List pending requests and exit
    #[arg(long, conflicts_with = "id")]
    pub list: bool,
    /// Approve without asking (needed when no terminal is attached)
    #[arg(long, short, requires = "id")]
    pub yes: bool,
    /// Queue: only this agent's requests (name or id)
    #[arg(long, value_name = "AGENT", conflicts_with = "id")]
    pub agent: Option<String>,
    /// Queue: exit once nothing is waiting, instead of waiting for more requests
    #[arg(long, conflicts_with_all = ["id", "list"])]
    pub once: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct RejectArgs {
    /// The request to reject
    pub id: String,
}

#[derive(Debug, Args)]
pub struct LimitsArgs {
    /// The agent's name or id
    pub agent: String,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct TxsArgs {
    /// Only this agent (name or id)
    #[arg(long)]
    pub agent: Option<String>,
    /// Only this status
    #[arg(long)]
    pub status: Option<assegai_sdk::wire::TxStatus>,
    /// How many of the newest requests
    #[arg(long, short = 'n', default_value_t = 50)]
    pub limit: u32,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: Option<KeysCommand>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Store a provider's key (from a hidden prompt, or `--stdin`; never from the command line)
    Set(KeysSetArgs),
    /// Show which keys are configured (masked) and which key store is in use
    List(JsonFlag),
    /// Remove a provider's key
    Remove(KeysProviderArg),
    /// Make one cheap authenticated call (`GET /v1/models`) to check a key
    Test(KeysProviderArg),
}

#[derive(Debug, Args)]
pub struct KeysSetArgs {
    /// openai, anthropic or deepseek
    pub provider: Provider,
    /// Read the key from standard input instead of a prompt
    #[arg(long)]
    pub stdin: bool,
}

#[derive(Debug, Args)]
pub struct KeysProviderArg {
    /// openai, anthropic or deepseek
    pub provider: Provider,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Only this agent (name or id)
    #[arg(long)]
    pub agent: Option<String>,
    /// How far back: e.g. 30m, 24h, 7d, or `all`
    #[arg(long, default_value = "30d")]
    pub since: String,
    /// Draw the cost per period as bars instead of the table: `day` (UTC days)
    #[arg(long, value_enum, value_name = "PERIOD")]
    pub by: Option<UsagePeriod>,
    #[command(flatten)]
    pub json: JsonFlag,
}

/// The periods `usage --by` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UsagePeriod {
    /// One bar per UTC day
    Day,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PricingArgs {
    #[command(subcommand)]
    pub command: Option<PricingCommand>,
    /// Without a subcommand: `pricing [FILTER] [--provider P] [--json]` lists.
    #[command(flatten)]
    pub list: PricingListArgs,
}

#[derive(Debug, Subcommand)]
pub enum PricingCommand {
    /// The price per million tokens of each model (the default)
    List(PricingListArgs),
    /// Install a newer LiteLLM `model_prices_and_context_window.json`
    Update(PricingUpdateArgs),
}

#[derive(Debug, Args)]
pub struct PricingListArgs {
    /// Only models whose id contains this text (e.g. `gpt-4o`, `sonnet`)
    pub filter: Option<String>,
    /// Only this provider's models: openai, anthropic or deepseek
    #[arg(long)]
    pub provider: Option<Provider>,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct PricingUpdateArgs {
    /// The JSON file
    #[arg(long, value_name = "PATH")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct WalletArgs {
    #[command(subcommand)]
    pub command: Option<WalletCommand>,
}

#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Show the signing address (and which wallet it is)
    Address(WalletAddressArgs),
    /// Store a private key (hidden prompt or `--stdin`) or an encrypted JSON keystore file
    Import(WalletImportArgs),
    /// Forget the imported wallet: only Anvil's test account signs, and only on local chains
    UseTestAccount(YesFlag),
}

#[derive(Debug, Args)]
pub struct WalletAddressArgs {
    /// The chain (CAIP-2) whose signer to show [default: every configured one]
    #[arg(long, value_name = "CAIP2")]
    pub chain: Option<assegai_sdk::ChainId>,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct WalletImportArgs {
    /// Read the private key (hex) from standard input instead of a prompt
    #[arg(long, conflicts_with = "keystore")]
    pub stdin: bool,
    /// An encrypted JSON keystore file (as `cast wallet new` or geth write); its password is asked
    /// for, or read from `ASSEGAI_KEYSTORE_PASSWORD`
    #[arg(long, value_name = "FILE")]
    pub keystore: Option<PathBuf>,
    /// Replace an already imported wallet without asking
    #[arg(long, short)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct YesFlag {
    /// Do not ask for confirmation
    #[arg(long, short)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct AllowanceArgs {
    #[command(subcommand)]
    pub command: AllowanceCommand,
}

#[derive(Debug, Subcommand)]
pub enum AllowanceCommand {
    /// Let an agent move up to AMOUNT of a token per request (0 removes the allowance)
    Set(AllowanceSetArgs),
    /// Allowances per agent, chain and token (from manifests and from `allowance set`)
    List(AllowanceListArgs),
}

#[derive(Debug, Args)]
pub struct AllowanceSetArgs {
    /// The agent's name or id
    pub agent: String,
    /// The chain (CAIP-2), e.g. eip155:1
    #[arg(long, value_name = "CAIP2")]
    pub chain: assegai_sdk::ChainId,
    /// A known token's symbol (USDC) or the token contract's address
    #[arg(long, value_name = "SYMBOL|ADDRESS")]
    pub token: String,
    /// Amount in token units, e.g. 1000 or 12.5
    pub amount: String,
}

#[derive(Debug, Args)]
pub struct AllowanceListArgs {
    /// Only this agent (name or id)
    pub agent: Option<String>,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The agent's name (letters, digits, `-` and `_`)
    pub name: String,
    /// Which template
    #[arg(long, short, value_enum, default_value_t = Template::Rust)]
    pub template: Template,
    /// Where to create it [default: ./NAME]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The agent templates `assegai new` can scaffold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// A Cargo project using `assegai-sdk`
    Rust,
    /// A Node.js project with a small SDK module
    Node,
    /// A Python 3 script with a small SDK module (standard library only)
    Python,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The agent's directory (holding assegai.json)
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Leave approvals to `assegai approve` in another terminal instead of asking inline
    #[arg(long)]
    pub no_prompt: bool,
    /// Accept a manifest that grants more than the registered one without asking
    #[arg(long)]
    pub accept_manifest: bool,
    /// Seconds between SIGTERM and SIGKILL when stopping the agent
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    pub grace: u64,
    /// Run it in a hardened Docker container instead of as a local process
    #[arg(long)]
    pub docker: bool,
    /// With --docker: print the docker commands instead of running them
    #[arg(long, requires = "docker")]
    pub dry_run: bool,
    /// Run the agent and its build unconfined (no Landlock): they can then read and write all
    /// you can, your assegai home included. Only for agents you trust
    #[arg(long, conflicts_with = "docker")]
    pub no_sandbox: bool,
}
