//! `assegai completions SHELL`.

use clap::CommandFactory;

use crate::{
    cli::{Cli, CompletionsArgs},
    printer::Printer,
};

pub fn run(args: &CompletionsArgs, printer: Printer) {
    // clap_complete panics when its writer fails (`| head` closing the pipe): generate into
    // memory, then write through the printer, which ends quietly when the reader has gone.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "assegai", &mut script);
    printer.data_raw(&script);
}
