//! Everything the CLI prints: results on stdout (text or one JSON object per line),
//! status lines and the spinner on stderr.
//!
//! Writes to stdout go through `writeln!` and return their `io::Error`, never
//! `println!`, which panics on a closed pipe: `main` treats a broken pipe as success.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::OutputConfig;

/// Prints results and status lines according to `--json` and `--quiet`.
#[derive(Debug)]
pub(crate) struct Printer {
    config: OutputConfig,
    /// Shown only when both ends are a terminal: a spinner is noise in a log file, and
    /// when stdout is piped the user asked for data, not decoration.
    spinner: Option<ProgressBar>,
}

impl Printer {
    pub(crate) fn new(config: OutputConfig) -> Self {
        Self {
            config,
            spinner: None,
        }
    }

    pub(crate) fn json(&self) -> bool {
        self.config.json
    }

    /// Prints one line of the command's real output to stdout.
    pub(crate) fn line(&self, text: impl std::fmt::Display) -> io::Result<()> {
        self.suspend(|| {
            let mut out = io::stdout().lock();
            writeln!(out, "{text}")?;
            out.flush()
        })
    }

    /// Writes bytes as they are to stdout (a completion script).
    pub(crate) fn raw(&self, bytes: &[u8]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    }

    /// Prints one JSON object on one line to stdout, its fields in the order the
    /// type declares them (the server's order), not sorted as a `Value` would be.
    pub(crate) fn json_line(&self, value: &impl serde::Serialize) -> io::Result<()> {
        let text = serde_json::to_string(value).map_err(io::Error::other)?;
        self.line(text)
    }

    /// A progress note on stderr (a status change); nothing with `--quiet` or `--json`.
    pub(crate) fn note(&self, text: impl std::fmt::Display) {
        if self.config.quiet || self.config.json {
            return;
        }
        match &self.spinner {
            Some(spinner) => spinner.println(text.to_string()),
            // Not `eprintln!`: it panics when stderr is a closed pipe, and a note
            // is not worth dying for.
            None => {
                let _ = writeln!(io::stderr().lock(), "{text}");
            }
        }
    }

    /// Starts the spinner (elapsed time and `message`) if stdout and stderr are both
    /// terminals and neither `--quiet` nor `--json` was given.
    pub(crate) fn start_spinner(&mut self, message: impl Into<String>) {
        let wanted = !self.config.quiet
            && !self.config.json
            && io::stdout().is_terminal()
            && io::stderr().is_terminal();
        if !wanted || self.spinner.is_some() {
            return;
        }
        let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                .expect("the spinner template is valid"),
        );
        spinner.set_message(message.into());
        spinner.enable_steady_tick(Duration::from_millis(100));
        self.spinner = Some(spinner);
    }

    /// Whether the spinner is on screen.
    pub(crate) fn spinner_shown(&self) -> bool {
        self.spinner.is_some()
    }

    /// Updates the spinner's message, if it is shown.
    pub(crate) fn spinner_message(&self, message: impl Into<String>) {
        if let Some(spinner) = &self.spinner {
            spinner.set_message(message.into());
        }
    }

    /// Removes the spinner from the screen.
    pub(crate) fn stop_spinner(&mut self) {
        if let Some(spinner) = self.spinner.take() {
            spinner.finish_and_clear();
        }
    }

    fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.spinner {
            Some(spinner) => spinner.suspend(f),
            None => f(),
        }
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        self.stop_spinner();
    }
}

/// Prints `mockpredict: MESSAGE` on stderr. A failed write to stderr is ignored:
/// there is nowhere left to report it.
pub(crate) fn error_line(message: impl std::fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "mockpredict: {message}");
}

/// A duration as a person reads it: `12.3s`, `850ms`.
pub(crate) fn human_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_millis(5)), "5ms");
        assert_eq!(human_duration(Duration::from_millis(12_340)), "12.3s");
    }
}
