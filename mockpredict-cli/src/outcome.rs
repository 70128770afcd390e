//! How a prediction's state becomes output and an exit code, the same way in-process
//! and against a server: both modes turn what they have into a [`View`] (for text) and
//! hand over the server's wire body (for `--json`); the functions here do the rest.

use std::time::Duration;

use mockpredict_core::{PredictionId, Status};

use crate::output::{Printer, human_duration};

/// The process's exit codes; documented in `--help` and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    Success = 0,
    /// The prediction failed or was canceled.
    PredictionFailed = 1,
    /// Bad flags or values, unreadable input.
    Usage = 2,
    /// The server could not be reached or refused the request.
    Server = 3,
    /// `wait` gave up before the prediction finished.
    TimedOut = 4,
    /// Something local failed that is not the user's input: the output could not be
    /// written (a full disk), the runtime would not start.
    Local = 5,
    /// Interrupted (Ctrl-C, SIGINT): 128 + the signal's number, as shells report it.
    Interrupted = 130,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}

/// What text output needs to know of a prediction, from either mode.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub(crate) id: PredictionId,
    pub(crate) status: Status,
    pub(crate) input: Option<String>,
    pub(crate) result: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) created_at: Option<String>,
    pub(crate) started_at: Option<String>,
    pub(crate) completed_at: Option<String>,
    pub(crate) predict_time: Option<Duration>,
}

/// Prints a finished prediction the way `predict` and `wait` do: the result alone on
/// stdout, or why there is none on stderr. In JSON mode, the object (unless the caller
/// already printed it, as the in-process `--async` stream does).
///
/// # Errors
///
/// Writing to stdout failed.
pub(crate) fn print_final(
    printer: &Printer,
    view: &View,
    json: Option<&impl serde::Serialize>,
) -> std::io::Result<Exit> {
    if printer.json() {
        if let Some(json) = json {
            printer.json_line(json)?;
        }
    }
    Ok(match view.status {
        Status::Succeeded => {
            if !printer.json() {
                printer.line(view.result.as_deref().unwrap_or_default())?;
            }
            Exit::Success
        }
        Status::Failed => {
            let why = view.error.as_deref().unwrap_or("no error message");
            crate::output::error_line(format_args!("prediction {} failed: {why}", view.id));
            Exit::PredictionFailed
        }
        Status::Canceled => {
            crate::output::error_line(format_args!("prediction {} was canceled", view.id));
            Exit::PredictionFailed
        }
        Status::Queued | Status::Processing => {
            crate::output::error_line(format_args!(
                "prediction {} is still {}: the wait timed out",
                view.id, view.status
            ));
            Exit::TimedOut
        }
    })
}

/// Prints a prediction's state the way `status` does: every known field, one per
/// line; the exit code says whether it failed or was canceled.
///
/// # Errors
///
/// Writing to stdout failed.
/// `text` on one line: control characters (line breaks, tabs, escapes) escaped as
/// Rust writes them (`\\n`), everything else as it is.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn print_status(
    printer: &Printer,
    view: &View,
    json: &impl serde::Serialize,
) -> std::io::Result<Exit> {
    if printer.json() {
        printer.json_line(json)?;
    } else {
        let fields = [
            ("id", Some(view.id.to_string())),
            ("status", Some(view.status.to_string())),
            ("input", view.input.clone()),
            ("result", view.result.clone()),
            ("error", view.error.clone()),
            ("created_at", view.created_at.clone()),
            ("started_at", view.started_at.clone()),
            ("completed_at", view.completed_at.clone()),
            ("predict_time", view.predict_time.map(human_duration)),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                // One field per line, whatever the text holds: line breaks and other
                // control characters are escaped, as `{:?}` would (without quotes).
                printer.line(format_args!("{name:<13}{}", one_line(&value)))?;
            }
        }
    }
    Ok(match view.status {
        Status::Failed | Status::Canceled => Exit::PredictionFailed,
        Status::Queued | Status::Processing | Status::Succeeded => Exit::Success,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_field_stays_on_one_line() {
        assert_eq!(one_line("two\nlines\tand é"), "two\\nlines\\tand é");
        assert_eq!(one_line("\u{1b}[31m"), "\\u{1b}[31m");
    }
}
