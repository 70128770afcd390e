//! `mockpredict`: slow mock predictions from the terminal, run in this process on the
//! core [`JobQueue`](mockpredict_core::JobQueue), or against a mockpredict server
//! through its typed client.
//!
//! The binary is glue: `args` is the raw clap command line, `config` checks it into a
//! [`Config`] (the only place flags are validated against each other), `local` and
//! `remote` run the two modes, `outcome` and `output` turn results into text, JSON
//! and an exit code. Results go to stdout, everything else to stderr.
//!
//! # Exit codes
//!
//! 0 success; 1 the prediction failed or was canceled; 2 usage error; 3 could not
//! reach the server or it refused; 4 `wait` timed out; 5 a local failure (the output
//! could not be written); 130 interrupted (Ctrl-C). A broken pipe on stdout ends the
//! process quietly with 0, as `head` expects.

mod args;
mod config;
mod interrupt;
mod local;
mod outcome;
mod output;
mod remote;

use std::io::{self, Read as _};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser as _};

use crate::args::Cli;
use crate::config::{Command, Config, Input, Target, UsageError};
use crate::outcome::Exit;
use crate::output::Printer;

fn main() -> ExitCode {
    match run() {
        Ok(exit) => exit.into(),
        Err(err) => report(&err).into(),
    }
}

fn run() -> anyhow::Result<Exit> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // `--help` and `--version` arrive here too, on stdout with exit 0.
            let _ = err.print();
            return Ok(if err.use_stderr() {
                Exit::Usage
            } else {
                Exit::Success
            });
        }
    };
    let config = Config::try_from(cli)?;
    init_tracing();
    let mut printer = Printer::new(config.output);
    // One thread is plenty: the CLI runs one prediction, and the queue's worker
    // spends its time asleep in the mock model.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(execute(&mut printer, config.command))
}

async fn execute(printer: &mut Printer, command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Predict {
            input,
            detach,
            target,
        } => {
            let input = read_input(input)?;
            match target {
                Target::InProcess(model) => local::predict(printer, model, input, detach).await,
                Target::Server(server) => remote::predict(printer, &server, input, detach).await,
            }
        }
        Command::Status { server, id } => remote::status(printer, &server, id).await,
        Command::Wait {
            server,
            id,
            timeout,
        } => remote::wait(printer, &server, id, timeout).await,
        Command::Cancel { server, id } => remote::cancel(printer, &server, id).await,
        Command::Health { server } => remote::health(printer, &server).await,
        Command::Completions(shell) => {
            // Into a buffer first: clap_complete panics when its writer fails, and a
            // closed pipe is not a reason to panic.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mockpredict", &mut script);
            printer.raw(&script)?;
            Ok(Exit::Success)
        }
    }
}

fn read_input(input: Input) -> anyhow::Result<String> {
    match input {
        Input::Text(text) => Ok(text),
        Input::Stdin => {
            let mut text = String::new();
            io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| UsageError(format!("could not read the input from stdin: {e}")))?;
            // `echo hello | mockpredict predict -` means "hello", not "hello\n".
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            Ok(text)
        }
    }
}

/// Logs from the libraries go to stderr, filtered by `RUST_LOG` (default: warnings).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .without_time()
        .try_init();
}

/// Prints an error with its whole cause chain (and hints, for server errors) and
/// picks the exit code from what is in that chain.
fn report(err: &anyhow::Error) -> Exit {
    let broken_pipe = err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return Exit::Success;
    }
    output::error_line(format_args!("error: {err:#}"));
    if let Some(server_err) = err
        .chain()
        .find_map(|c| c.downcast_ref::<remote::ServerError>())
    {
        if let Some(hint) = server_err.hint() {
            output::error_line(format_args!("hint: {hint}"));
        }
        return Exit::Server;
    }
    if err
        .chain()
        .any(|c| c.downcast_ref::<UsageError>().is_some())
    {
        return Exit::Usage;
    }
    // Anything else local: stdout could not be written (a full disk), no runtime.
    Exit::Local
}
