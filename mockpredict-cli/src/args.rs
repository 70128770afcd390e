//! The raw command line, as clap parses it. Nothing here is checked beyond what each
//! value's own parser checks; [`Config`](crate::config::Config) is built from it with
//! `TryFrom`, and that conversion is where flags are checked against each other.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;
use mockpredict_core::{Latency, PredictionId};

/// The exit-code table printed at the end of every `--help`, kept in step with the
/// README's. A macro, so that each command's examples can be `concat!`ed before it.
macro_rules! exit_codes {
    () => {
        "\
Exit codes:
  0    success
  1    the prediction failed or was canceled
  2    usage error (bad flag or value, unreadable input)
  3    could not reach the server, or the server refused the request
  4    `wait` timed out before the prediction finished
  5    a local failure: the output could not be written (a full disk, say)
  130  interrupted (Ctrl-C); a remote `predict` cancels its prediction first

Without --server (or MOCKPREDICT_SERVER) `predict` runs the mock model in this
process; `status`, `wait`, `cancel` and `health` need a server. Logs go to stderr,
filtered by RUST_LOG (default: warn)."
    };
}

const EXIT_CODES: &str = exit_codes!();

const PREDICT_HELP: &str = concat!(
    "\
Examples:
  mockpredict predict hello --latency 2s --seed 7      # in this process
  echo hello | mockpredict predict -                   # the input from stdin
  export MOCKPREDICT_SERVER=http://127.0.0.1:8000
  mockpredict predict hello                            # on the server; waits
  id=$(mockpredict predict hello --async)              # prints the ID at once
  mockpredict --json predict hello | jq -r .output.result  # from the JSON

",
    exit_codes!()
);

const STATUS_HELP: &str = concat!(
    "\
Examples:
  mockpredict status \"$id\"
  mockpredict --json status \"$id\" | jq -r .status

",
    exit_codes!()
);

const WAIT_HELP: &str = concat!(
    "\
Examples:
  mockpredict wait \"$id\"                   # until it finishes
  mockpredict wait \"$id\" --timeout 2m      # exit 4 if it has not by then

It long-polls the server; on a terminal it follows the prediction's event stream to
show the live status. Ctrl-C stops the waiting only: the prediction goes on (cancel
it with `cancel`).

",
    exit_codes!()
);

const CANCEL_HELP: &str = concat!(
    "\
Examples:
  mockpredict cancel \"$id\"

",
    exit_codes!()
);

const HEALTH_HELP: &str = concat!(
    "\
Examples:
  mockpredict --server http://127.0.0.1:8000 health

/healthz and /readyz need no API token, so this does not check --token.

",
    exit_codes!()
);

/// Run slow mock predictions in-process, or drive a mockpredict server.
#[derive(Debug, Parser)]
#[command(name = "mockpredict", version, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: CommandArgs,
}

/// Flags every subcommand accepts, before or after its name.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Base URL of a mockpredict server, e.g. http://127.0.0.1:8000. Without it,
    /// `predict` runs the mock model in this process.
    #[arg(
        long,
        short = 's',
        env = "MOCKPREDICT_SERVER",
        global = true,
        value_name = "URL"
    )]
    pub(crate) server: Option<String>,

    /// Bearer token for a server started with an API token.
    #[arg(
        long,
        env = "MOCKPREDICT_API_TOKEN",
        global = true,
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) token: Option<String>,

    /// Print the full JSON of each response, one object per line, instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// Print only results: no spinner, no status lines.
    #[arg(long, short = 'q', global = true)]
    pub(crate) quiet: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CommandArgs {
    /// Run one prediction and print its result (or, with --async, its ID).
    #[command(after_help = PREDICT_HELP)]
    Predict(PredictArgs),
    /// Print a prediction's current status.
    #[command(after_help = STATUS_HELP)]
    Status {
        /// The prediction ID.
        id: PredictionId,
    },
    /// Wait until a prediction finishes and print its result.
    #[command(after_help = WAIT_HELP)]
    Wait {
        /// The prediction ID.
        id: PredictionId,
        /// Give up after this long (e.g. `30s`, `2m`) with exit code 4; default: no limit.
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        timeout: Option<Duration>,
    },
    /// Cancel a queued or running prediction.
    #[command(after_help = CANCEL_HELP)]
    Cancel {
        /// The prediction ID.
        id: PredictionId,
    },
    /// Check that the server is up and ready.
    #[command(after_help = HEALTH_HELP)]
    Health,
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        shell: Shell,
    },
}

#[derive(Debug, Args)]
pub(crate) struct PredictArgs {
    /// The input text; `-` reads it from standard input (one trailing newline is dropped).
    pub(crate) input: String,

    /// Do not wait: print the prediction ID at once. Against a server the command
    /// then exits; in-process it follows the status changes to the result.
    #[arg(long = "async")]
    pub(crate) detach: bool,

    #[command(flatten)]
    pub(crate) mock: MockArgs,
}

/// The in-process mock model's options; the same parsers as the server's flags.
#[derive(Debug, Args)]
#[command(next_help_heading = "In-process mock model (without --server)")]
pub(crate) struct MockArgs {
    /// Latency distribution: `250ms`, `8s..15s`, `lognormal(median=10s,sigma=0.5,max=60s)`.
    /// Default: 8s..15s, like the original service.
    #[arg(long, value_name = "LATENCY")]
    pub(crate) latency: Option<Latency>,

    /// Make the result (and latency, and failure) a pure function of seed and input.
    #[arg(long, value_name = "N")]
    pub(crate) seed: Option<u64>,

    /// Share of predictions, in [0, 1], that fail after their latency.
    #[arg(long, value_name = "RATE")]
    pub(crate) failure_rate: Option<f64>,
}

impl MockArgs {
    /// Whether any mock option was given (they make no sense against a server).
    pub(crate) fn any(&self) -> bool {
        self.latency.is_some() || self.seed.is_some() || self.failure_rate.is_some()
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }
}
