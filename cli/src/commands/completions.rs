//! `assegai completions SHELL`.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};

pub fn run(args: &CompletionsArgs) {
    clap_complete::generate(args.shell, &mut Cli::command(), "assegai", &mut std::io::stdout());
}
