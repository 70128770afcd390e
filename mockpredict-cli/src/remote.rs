//! Client mode: every command against a mockpredict server, through the server
//! crate's typed [`Client`], so the HTTP protocol is defined in one place.
//!
//! Every client error becomes a [`ServerError`], which `main` reports with exit code
//! 3 and a hint for the cases a user can fix (no server running, a missing or wrong
//! token, an unknown ID, a full queue).

use std::fmt;
use std::time::Duration;

use mockpredict_core::{MockOutput, PredictionId, Status};
use mockpredict_server::client::{self, Client};
use mockpredict_server::wire::PredictionBody;
use tokio::time::Instant;

use crate::config::Server;
use crate::interrupt::Interrupt;
use crate::outcome::{Exit, View, print_final, print_status};
use crate::output::{self, Printer};

type Body = PredictionBody<String, MockOutput>;

/// A failure to reach the server, or its refusal: exit code 3.
#[derive(Debug)]
pub(crate) enum ServerError {
    /// The client call failed; `token_sent` picks the right 401 hint.
    Client {
        source: client::Error,
        token_sent: bool,
    },
    /// The server is up but answers 503 on `/readyz`.
    NotReady { url: String },
}

// Displays and chains exactly like the client's error (no extra link in `{:#}`): the
// wrapper exists only to carry the exit code and the hint.
impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Client { source, .. } => fmt::Display::fmt(source, f),
            ServerError::NotReady { url } => write!(
                f,
                "{url} is alive but not ready (503 on /readyz): it is draining or its backend \
                 is unreachable"
            ),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Client { source, .. } => std::error::Error::source(source),
            ServerError::NotReady { .. } => None,
        }
    }
}

impl ServerError {
    /// What the user can do about it, when there is something.
    pub(crate) fn hint(&self) -> Option<String> {
        let ServerError::Client { source, token_sent } = self else {
            return None;
        };
        Some(match source {
            // hyper-util exposes no typed "DNS failed" kind; its message is the only
            // tell, and a wrong guess costs no more than a less specific hint.
            client::Error::Connect { .. } if chain_mentions(source, "dns error") => {
                "the server's host name did not resolve: check --server / MOCKPREDICT_SERVER"
                    .to_owned()
            }
            // hyper's parse errors ("invalid HTTP version parsed", …): bytes came
            // back, but not HTTP (an SSH or database port, say).
            client::Error::Connect { .. } if chain_mentions(source, " parsed") => {
                "something answered at that address, but not in HTTP: check the port in \
                 --server / MOCKPREDICT_SERVER"
                    .to_owned()
            }
            client::Error::Connect { .. } => "is the server running at that address? start one \
                 with `mockpredict-server`, or check --server / MOCKPREDICT_SERVER"
                .to_owned(),
            client::Error::Unauthorized { .. } if *token_sent => "the server rejected the token: \
                 check --token / MOCKPREDICT_API_TOKEN against the server's API token"
                .to_owned(),
            client::Error::Unauthorized { .. } => "the server requires an API token: pass \
                 --token TOKEN or set MOCKPREDICT_API_TOKEN"
                .to_owned(),
            client::Error::NotFound {
                error_type: Some(t),
                ..
            } if t == "route_not_found" => "the server has no such route: check the path in \
                 --server / MOCKPREDICT_SERVER (is it a mockpredict server?)"
                .to_owned(),
            // Every 404 of ours says what it is: this one came from something else.
            client::Error::NotFound {
                error_type: None, ..
            } => "that address answers, but not as a mockpredict server would: check \
                 --server / MOCKPREDICT_SERVER"
                .to_owned(),
            client::Error::NotFound { .. } => "no prediction with that ID on this server: it \
                 never existed, its result expired (servers keep results for a limited time), \
                 or the server restarted (the in-memory default forgets every prediction)"
                .to_owned(),
            // The client's message already carries the server's Retry-After.
            client::Error::QueueFull { .. } => "the server's queue is at capacity: retry \
                 after the delay it asked for, or give the server a larger --capacity"
                .to_owned(),
            client::Error::Timeout { .. } => {
                "the server accepted the connection but did not answer in time".to_owned()
            }
            client::Error::Status { status: 413, .. } => "the input is larger than the \
                 server's body limit (its --max-body, 1 MiB by default; JSON escaping of \
                 quotes and backslashes counts too)"
                .to_owned(),
            client::Error::Status { status: 503, .. } => "the server is shutting down or its \
                 backend is unavailable: retry in a few seconds, or against another server"
                .to_owned(),
            client::Error::BadResponse { .. } => "something answered at that address, but \
                 not with a mockpredict server's HTTP: check --server / MOCKPREDICT_SERVER"
                .to_owned(),
            _ => return None,
        })
    }
}

/// Whether any error in `err`'s cause chain says `needle`.
fn chain_mentions(err: &(dyn std::error::Error + 'static), needle: &str) -> bool {
    std::iter::successors(Some(err), |e| e.source()).any(|e| e.to_string().contains(needle))
}

/// Calls through the client, turning its errors into [`ServerError`].
struct Remote {
    client: Client,
    token_sent: bool,
}

impl Remote {
    fn new(server: &Server) -> Result<Self, ServerError> {
        let token_sent = server.token.is_some();
        let client = Client::new(&server.url)
            .map_err(|source| ServerError::Client { source, token_sent })?;
        let client = match &server.token {
            Some(token) => client.with_token(token),
            None => client,
        };
        Ok(Self { client, token_sent })
    }

    fn err(&self, source: client::Error) -> ServerError {
        ServerError::Client {
            source,
            token_sent: self.token_sent,
        }
    }
}

/// `predict` against a server: `--async` prints the ID and exits; otherwise it
/// submits, then waits on the ID (the event stream on a terminal, so the spinner
/// shows each status; the long-poll otherwise). Knowing the ID from the start, a
/// Ctrl-C cancels the prediction on the server before exiting 130, rather than
/// leaving it running with no one to know its ID.
///
/// # Errors
///
/// [`ServerError`] when the server cannot be reached or refuses; stdout failures.
pub(crate) async fn predict(
    printer: &mut Printer,
    server: &Server,
    input: String,
    detach: bool,
) -> anyhow::Result<Exit> {
    let remote = Remote::new(server)?;
    let client = &remote.client;
    if detach {
        let accepted = client.submit(&input).await.map_err(|e| remote.err(e))?;
        if printer.json() {
            // The server's whole 202 answer: `prediction_id`, `status`, `message`.
            printer.json_line(&accepted)?;
        } else {
            printer.line(accepted.prediction_id)?;
        }
        return Ok(Exit::Success);
    }
    printer.start_spinner(format!("waiting for {}", server.url));
    let mut interrupt = Interrupt::listen();
    let submit = client.submit(&input);
    tokio::pin!(submit);
    let accepted = tokio::select! {
        accepted = &mut submit => accepted,
        () = interrupt.recv() => {
            printer.stop_spinner();
            // The server may have admitted it already: hear the answer out (briefly),
            // so that there is an ID to cancel.
            match tokio::time::timeout(SUBMIT_ANSWER_GRACE, submit).await {
                Ok(Ok(accepted)) => cancel_on_interrupt(&remote, accepted.prediction_id).await,
                Ok(Err(_)) => output::error_line("interrupted; the submit had failed anyway"),
                Err(_) => output::error_line(
                    "interrupted before the server answered: a prediction may have been \
                     admitted, with an ID this command never learned",
                ),
            }
            return Ok(Exit::Interrupted);
        }
    }
    .map_err(|e| remote.err(e))?;
    let id = accepted.prediction_id;
    printer.spinner_message(format!("{id} {}", accepted.status));
    let body = tokio::select! {
        body = follow(printer, &remote, id, None) => body?,
        () = interrupt.recv() => {
            printer.stop_spinner();
            cancel_on_interrupt(&remote, id).await;
            return Ok(Exit::Interrupted);
        }
    };
    printer.stop_spinner();
    Ok(print_final(printer, &view(&body), Some(&body))?)
}

/// After Ctrl-C, how long a submit already sent may take to answer with its ID.
const SUBMIT_ANSWER_GRACE: Duration = Duration::from_secs(2);

/// After Ctrl-C, how long the cancel may take; a second Ctrl-C stops it at once.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Cancels `id` after a Ctrl-C, and says what came of it on stderr.
async fn cancel_on_interrupt(remote: &Remote, id: PredictionId) {
    let mut again = Interrupt::listen();
    let canceled = tokio::select! {
        canceled = tokio::time::timeout(CANCEL_GRACE, remote.client.cancel(id)) => canceled,
        () = again.recv() => {
            output::error_line(format_args!(
                "interrupted twice: {id} may still run (`mockpredict cancel {id}`)"
            ));
            return;
        }
    };
    match canceled {
        Ok(Ok(body)) if body.status == Status::Canceled => {
            output::error_line(format_args!("interrupted: canceled {id}"));
        }
        Ok(Ok(body)) => output::error_line(format_args!(
            "interrupted: {id} had already {} (`mockpredict status {id}` shows it)",
            body.status
        )),
        Ok(Err(e)) => output::error_line(format_args!(
            "interrupted; could not cancel {id} ({e}): `mockpredict cancel {id}`"
        )),
        Err(_) => output::error_line(format_args!(
            "interrupted; the cancel of {id} got no answer in {}: `mockpredict cancel {id}`",
            humantime::format_duration(CANCEL_GRACE)
        )),
    }
}

/// `status ID`.
///
/// # Errors
///
/// [`ServerError`] when the server cannot be reached or refuses; stdout failures.
pub(crate) async fn status(
    printer: &mut Printer,
    server: &Server,
    id: PredictionId,
) -> anyhow::Result<Exit> {
    let remote = Remote::new(server)?;
    let body = remote.client.get(id).await.map_err(|e| remote.err(e))?;
    Ok(print_status(printer, &view(&body), &body)?)
}

/// `wait ID [--timeout]`: the client's long-poll, or the event stream while a spinner
/// shows the live status; never a tight polling loop.
///
/// # Errors
///
/// [`ServerError`] when the server cannot be reached or refuses; stdout failures.
pub(crate) async fn wait(
    printer: &mut Printer,
    server: &Server,
    id: PredictionId,
    timeout: Option<Duration>,
) -> anyhow::Result<Exit> {
    let remote = Remote::new(server)?;
    let mut interrupt = Interrupt::listen();
    printer.start_spinner(format!("{id} waiting"));
    let body = tokio::select! {
        body = follow(printer, &remote, id, timeout) => body?,
        () = interrupt.recv() => {
            // Only the waiting stops: the prediction is not this command's to cancel.
            printer.stop_spinner();
            output::error_line(format_args!(
                "interrupted: stopped waiting; {id} goes on (`mockpredict cancel {id}` \
                 cancels it)"
            ));
            return Ok(Exit::Interrupted);
        }
    };
    printer.stop_spinner();
    Ok(print_final(printer, &view(&body), Some(&body))?)
}

/// Waits until the prediction finishes or `timeout` passes and returns it then
/// (still pending, if the time ran out).
///
/// With a spinner on screen, it follows the prediction's event stream, so the
/// spinner shows each status as it changes with one open request. Otherwise (and when
/// the stream is unavailable or ends early) the client's long-poll waits, with as
/// few requests as it can.
async fn follow(
    printer: &Printer,
    remote: &Remote,
    id: PredictionId,
    timeout: Option<Duration>,
) -> Result<Body, ServerError> {
    // A timeout too long to add to now (`--timeout 500000000000y`) is no limit.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    if printer.spinner_shown() {
        if let Some(done) = follow_events(printer, remote, id, deadline).await? {
            return Ok(done);
        }
    }
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    remote
        .client
        .wait(id, left)
        .await
        .map_err(|e| remote.err(e))
}

/// Follows the event stream until the terminal event (`Some`), or returns `None` to
/// let the long-poll take over: the deadline passed (the long-poll then answers at
/// once with the pending prediction), the stream ended early or broke (a transient
/// failure, which the long-poll retries), or the server has no event streams.
async fn follow_events(
    printer: &Printer,
    remote: &Remote,
    id: PredictionId,
    deadline: Option<Instant>,
) -> Result<Option<Body>, ServerError> {
    let until_deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until_deadline);
    let mut events = tokio::select! {
        () = &mut until_deadline => return Ok(None),
        opened = remote.client.events(id) => match opened {
            Ok(events) => events,
            Err(client::Error::NotFound { error_type: Some(t), .. }) if t == "route_not_found" => {
                return Ok(None);
            }
            // The long-poll retries what a retry may cure.
            Err(e) if e.is_transient() => return Ok(None),
            Err(e) => return Err(remote.err(e)),
        },
    };
    loop {
        let next = tokio::select! {
            () = &mut until_deadline => return Ok(None),
            next = events.next() => match next {
                Ok(next) => next,
                Err(e) if e.is_transient() => return Ok(None),
                Err(e) => return Err(remote.err(e)),
            },
        };
        let Some(body) = next else { return Ok(None) };
        printer.spinner_message(format!("{id} {}", body.status));
        if body.is_finished() {
            return Ok(Some(body));
        }
    }
}

/// `cancel ID`: succeeds when the server accepted the cancel, whatever status the
/// prediction had already reached (that status is printed).
///
/// # Errors
///
/// [`ServerError`] when the server cannot be reached or refuses; stdout failures.
pub(crate) async fn cancel(
    printer: &mut Printer,
    server: &Server,
    id: PredictionId,
) -> anyhow::Result<Exit> {
    let remote = Remote::new(server)?;
    let body = remote.client.cancel(id).await.map_err(|e| remote.err(e))?;
    if printer.json() {
        printer.json_line(&body)?;
    } else if body.status == Status::Canceled {
        printer.line(format_args!("{id} canceled"))?;
    } else {
        printer.line(format_args!(
            "{id} had already {}; nothing to cancel",
            body.status
        ))?;
    }
    Ok(Exit::Success)
}

/// `health`: alive (`/healthz`) and ready (`/readyz`).
///
/// # Errors
///
/// [`ServerError`] when the server cannot be reached, refuses, or is not ready.
pub(crate) async fn health(printer: &mut Printer, server: &Server) -> anyhow::Result<Exit> {
    let remote = Remote::new(server)?;
    let health = remote.client.health().await.map_err(|e| remote.err(e))?;
    let ready = remote.client.ready().await.map_err(|e| remote.err(e))?;
    if printer.json() {
        let mut json = serde_json::to_value(&health)?;
        json["ready"] = ready.into();
        printer.json_line(&json)?;
    }
    if !ready {
        return Err(ServerError::NotReady {
            url: server.url.clone(),
        }
        .into());
    }
    if !printer.json() {
        printer.line(format_args!("{}: {} and ready", server.url, health.status))?;
    }
    Ok(Exit::Success)
}

fn view(body: &Body) -> View {
    View {
        id: body.prediction_id,
        status: body.status,
        input: Some(body.input.clone()),
        result: body.output.as_ref().map(|o| o.result.clone()),
        error: body.error.as_ref().map(|e| e.message.clone()),
        created_at: Some(humantime::format_rfc3339_millis(body.created_at).to_string()),
        started_at: body
            .started_at
            .map(|t| humantime::format_rfc3339_millis(t).to_string()),
        completed_at: body
            .completed_at
            .map(|t| humantime::format_rfc3339_millis(t).to_string()),
        predict_time: body
            .metrics
            .predict_time
            .and_then(|s| Duration::try_from_secs_f64(s).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(source: client::Error, token_sent: bool) -> String {
        ServerError::Client { source, token_sent }
            .hint()
            .unwrap_or_default()
    }

    #[test]
    fn a_401_hint_depends_on_whether_a_token_was_sent() {
        let unauthorized = || client::Error::Unauthorized {
            url: "http://h:1/x".into(),
            message: "missing or invalid API token".into(),
            error_type: Some("unauthorized".into()),
        };
        assert!(hint(unauthorized(), false).contains("requires an API token"));
        assert!(hint(unauthorized(), true).contains("rejected the token"));
    }

    #[test]
    fn a_429_reports_the_servers_retry_after_and_hints_at_capacity() {
        let full = client::Error::QueueFull {
            url: "http://h:1/predictions/predict".into(),
            retry_after: Some(Duration::from_secs(7)),
            message: "queue is full".into(),
        };
        assert!(full.to_string().contains("retry after 7s"), "{full}");
        assert!(hint(full, false).contains("--capacity"));
    }

    #[test]
    fn a_404_hint_tells_an_unknown_route_from_an_unknown_id() {
        let not_found = |t: &str| client::Error::NotFound {
            url: "http://h:1/api/predictions/predict/x".into(),
            message: "no such route".into(),
            error_type: Some(t.into()),
        };
        assert!(hint(not_found("route_not_found"), false).contains("no such route"));
        assert!(hint(not_found("not_found"), false).contains("expired"));
        // A 404 without our error body came from something else.
        let foreign = client::Error::NotFound {
            url: "http://h:1/healthz".into(),
            message: "<!DOCTYPE HTML> … (469 bytes, not a mockpredict error body)".into(),
            error_type: None,
        };
        assert!(hint(foreign, false).contains("not as a mockpredict server would"));
    }

    #[test]
    fn a_413_and_a_503_have_hints() {
        let status = |status: u16| client::Error::Status {
            url: "http://h:1/predictions/predict".into(),
            status,
            error_type: None,
            message: "x".into(),
        };
        assert!(hint(status(413), false).contains("--max-body"));
        assert!(hint(status(503), false).contains("shutting down"));
    }

    #[test]
    fn the_wrapper_adds_no_link_to_the_cause_chain() {
        let inner = client::Error::NotFound {
            url: "http://h:1/predictions/predict/x".into(),
            message: "Prediction ID not found.".into(),
            error_type: Some("not_found".into()),
        };
        let text = inner.to_string();
        let err = anyhow::Error::new(ServerError::Client {
            source: inner,
            token_sent: false,
        });
        assert_eq!(format!("{err:#}"), text);
    }
}
