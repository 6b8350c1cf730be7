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
    #[arg(long, global = true, env = env::HOME, value_name = "DIR")]
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
    /// The request to approve (see `--list`)
    pub id: Option<String>,
    /// List pending requests and exit
    #[arg(long, conflicts_with = "id")]
    pub list: bool,
    /// Approve without asking (needed when no terminal is attached)
    #[arg(long, short, requires = "id")]
    pub yes: bool,
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
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct PricingArgs {
    #[command(subcommand)]
    pub command: PricingCommand,
}

#[derive(Debug, Subcommand)]
pub enum PricingCommand {
    /// Install a newer LiteLLM `model_prices_and_context_window.json`
    Update(PricingUpdateArgs),
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
