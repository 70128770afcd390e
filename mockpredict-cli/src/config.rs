//! The checked configuration: [`Config`] is built from the raw [`Cli`] with `TryFrom`,
//! and every rule that ties flags together lives in that one conversion. Whatever
//! fails here is a usage error (exit code 2).

use std::time::Duration;

use clap_complete::Shell;
use mockpredict_core::{MockModel, PredictionId};

use crate::args::{Cli, CommandArgs, MockArgs};

/// A command line that cannot be run as given. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

/// What to run and how to print it.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) output: OutputConfig,
    pub(crate) command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutputConfig {
    /// One JSON object per line instead of text.
    pub(crate) json: bool,
    /// No spinner, no status lines: only results and errors.
    pub(crate) quiet: bool,
}

#[derive(Debug)]
pub(crate) enum Command {
    Predict {
        input: Input,
        /// `--async`: print the ID at once.
        detach: bool,
        target: Target,
    },
    Status {
        server: Server,
        id: PredictionId,
    },
    Wait {
        server: Server,
        id: PredictionId,
        timeout: Option<Duration>,
    },
    Cancel {
        server: Server,
        id: PredictionId,
    },
    Health {
        server: Server,
    },
    Completions(Shell),
}

/// Where the prediction's input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    Text(String),
    Stdin,
}

/// Where a prediction runs.
#[derive(Debug)]
pub(crate) enum Target {
    /// The mock model on a job queue inside this process.
    InProcess(MockModel),
    /// A mockpredict server.
    Server(Server),
}

/// A server to talk to.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    /// The base URL, without a trailing slash.
    pub(crate) url: String,
    pub(crate) token: Option<String>,
}

impl Server {
    fn new(url: &str, token: Option<String>) -> Result<Self, UsageError> {
        let url = url.trim();
        // The client's own parser decides what a valid base URL is. https is let
        // through to fail when connecting, with exit code 3 and the client's "no TLS"
        // message: the issue counts it among the ways of not reaching a server.
        if !url.starts_with("https://") {
            mockpredict_server::client::Client::new(url)
                .map_err(|e| UsageError(format!("--server: {e}")))?;
        }
        // Surrounding whitespace (a newline from a file, say) is no part of a bearer
        // token; anything else that cannot go in a header is a mistake to report.
        let token = token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        if token
            .as_ref()
            .is_some_and(|t| t.chars().any(char::is_control))
        {
            return Err(UsageError(
                "--token / MOCKPREDICT_API_TOKEN contains a control character".to_owned(),
            ));
        }
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            token,
        })
    }
}

fn mock_model(mock: MockArgs) -> Result<MockModel, UsageError> {
    let model = MockModel::new()
        .with_latency(mock.latency.unwrap_or_default())
        .with_optional_seed(mock.seed);
    match mock.failure_rate {
        Some(rate) => model
            .with_failure_rate(rate)
            .map_err(|e| UsageError(format!("--failure-rate: {e}"))),
        None => Ok(model),
    }
}

impl TryFrom<Cli> for Config {
    type Error = UsageError;

    fn try_from(cli: Cli) -> Result<Self, Self::Error> {
        let global = cli.global;
        let output = OutputConfig {
            json: global.json,
            quiet: global.quiet,
        };
        let server = global
            .server
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|url| Server::new(url, global.token.clone()))
            .transpose()?;
        let need_server = |what: &str| {
            server.clone().ok_or_else(|| {
                UsageError(format!(
                    "`{what}` needs a server: pass --server URL or set MOCKPREDICT_SERVER \
                     (in-process predictions end with the process that ran them)"
                ))
            })
        };
        let command = match cli.command {
            CommandArgs::Predict(args) => {
                let target = match server.clone() {
                    Some(server) => {
                        if args.mock.any() {
                            return Err(UsageError(
                                "--latency, --seed and --failure-rate configure the in-process \
                                 mock model; a server's model is configured where the server runs \
                                 (drop them, or drop --server / MOCKPREDICT_SERVER)"
                                    .to_owned(),
                            ));
                        }
                        Target::Server(server)
                    }
                    None => Target::InProcess(mock_model(args.mock)?),
                };
                let input = if args.input == "-" {
                    Input::Stdin
                } else {
                    Input::Text(args.input)
                };
                Command::Predict {
                    input,
                    detach: args.detach,
                    target,
                }
            }
            CommandArgs::Status { id } => Command::Status {
                server: need_server("status")?,
                id,
            },
            CommandArgs::Wait { id, timeout } => Command::Wait {
                server: need_server("wait")?,
                id,
                timeout,
            },
            CommandArgs::Cancel { id } => Command::Cancel {
                server: need_server("cancel")?,
                id,
            },
            CommandArgs::Health => Command::Health {
                server: need_server("health")?,
            },
            CommandArgs::Completions { shell } => Command::Completions(shell),
        };
        Ok(Config { output, command })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn config(args: &[&str]) -> Result<Config, UsageError> {
        let cli = Cli::try_parse_from(std::iter::once("mockpredict").chain(args.iter().copied()))
            .expect("clap accepts the arguments");
        Config::try_from(cli)
    }

    #[test]
    fn predict_without_a_server_runs_in_process_with_the_given_mock() {
        let c = config(&["predict", "--latency", "5ms", "--seed", "3", "hi"]).expect("valid");
        let Command::Predict {
            target: Target::InProcess(model),
            input,
            detach: false,
        } = c.command
        else {
            panic!("expected an in-process predict, got {:?}", c.command);
        };
        assert_eq!(input, Input::Text("hi".into()));
        assert_eq!(model.seed(), Some(3));
        assert_eq!(model.latency().to_string(), "5ms");
    }

    #[test]
    fn a_dash_means_stdin() {
        let c = config(&["predict", "-"]).expect("valid");
        assert!(matches!(
            c.command,
            Command::Predict {
                input: Input::Stdin,
                ..
            }
        ));
    }

    #[test]
    fn failure_rate_outside_the_unit_interval_is_a_usage_error() {
        let e = config(&["predict", "--failure-rate", "1.5", "x"]).expect_err("out of range");
        assert!(e.to_string().contains("failure-rate"), "{e}");
    }

    #[test]
    fn mock_options_with_a_server_are_refused() {
        let e = config(&["--server", "http://h:1", "predict", "--seed", "1", "x"])
            .expect_err("conflict");
        assert!(e.to_string().contains("in-process"), "{e}");
    }

    #[test]
    fn id_commands_need_a_server() {
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        for cmd in [
            &["status", id][..],
            &["wait", id],
            &["cancel", id],
            &["health"],
        ] {
            let e = config(cmd).expect_err("no server");
            assert!(e.to_string().contains("--server"), "{e}");
        }
    }

    #[test]
    fn the_server_url_is_normalized_and_checked() {
        let c = config(&["--server", "http://127.0.0.1:8000/", "health"]).expect("valid");
        let Command::Health { server } = c.command else {
            panic!("health")
        };
        assert_eq!(server.url, "http://127.0.0.1:8000");
        assert!(config(&["--server", "127.0.0.1:8000", "health"]).is_err());
        assert!(config(&["--server", "ftp://h", "health"]).is_err());
    }

    #[test]
    fn an_empty_token_counts_as_none() {
        let c = config(&["--server", "http://h:1", "--token", "", "health"]).expect("valid");
        let Command::Health { server } = c.command else {
            panic!("health")
        };
        assert_eq!(server.token, None);
    }

    #[test]
    fn a_token_is_trimmed_and_control_characters_are_refused() {
        let c =
            config(&["--server", "http://h:1", "--token", " s3cret\n", "health"]).expect("valid");
        let Command::Health { server } = c.command else {
            panic!("health")
        };
        assert_eq!(server.token.as_deref(), Some("s3cret"));
        let e = config(&["--server", "http://h:1", "--token", "s3\ncret", "health"])
            .expect_err("a newline inside");
        assert!(e.to_string().contains("control character"), "{e}");
    }

    #[test]
    fn a_server_url_with_a_fragment_credentials_or_a_bad_port_is_a_usage_error() {
        for url in [
            "http://127.0.0.1:8000#frag",
            "http://u:p@127.0.0.1:8000",
            "http://127.0.0.1:99999",
            "http://127.0.0.1:abc",
        ] {
            assert!(config(&["--server", url, "health"]).is_err(), "{url}");
        }
    }
}
