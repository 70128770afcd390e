//! In-process mode: the mock model on a [`JobQueue`] inside this process, followed
//! through [`JobQueue::subscribe`], so the spinner and `--async` status lines show the
//! real `queued → processing → succeeded` transitions, not a guess. `--json` prints
//! the server's wire type, [`PredictionBody`], so scripts read both modes alike.

use std::time::SystemTime;

use anyhow::Context as _;
use mockpredict_core::{JobQueue, MockModel, MockOutput, Prediction, QueueConfig};
use mockpredict_server::wire::PredictionBody;
use tokio::time::Instant;

use crate::outcome::{Exit, View, print_final};
use crate::output::{Printer, human_duration};

type MockPrediction = Prediction<String, MockOutput>;

/// Runs one prediction in-process and prints it; see the module docs.
///
/// # Errors
///
/// The queue refused the prediction (it cannot, with one prediction and the default
/// capacity), or writing to stdout failed.
pub(crate) async fn predict(
    printer: &mut Printer,
    model: MockModel,
    input: String,
    detach: bool,
) -> anyhow::Result<Exit> {
    let queue = JobQueue::new(model, QueueConfig::default().concurrency(1))
        .context("could not start the in-process queue")?;
    let mut interrupt = crate::interrupt::Interrupt::listen();
    let start = Instant::now();
    let id = queue
        .submit(input)
        .await
        .context("the in-process queue refused the prediction")?;
    if detach && !printer.json() {
        printer.line(id)?;
    }
    let mut updates = queue
        .subscribe(id)
        .await
        .context("could not follow the in-process prediction")?;
    printer.start_spinner(format!("{id} queued"));
    let mut last = None;
    loop {
        let next = tokio::select! {
            next = updates.next() => next,
            () = interrupt.recv() => {
                // The prediction lives in this process and ends with it.
                printer.stop_spinner();
                crate::output::error_line(format_args!("interrupted: {id} ends with this process"));
                return Ok(Exit::Interrupted);
            }
        };
        let Some(snapshot) = next else { break };
        let status = snapshot.status;
        if detach {
            if printer.json() {
                printer.json_line(&PredictionBody::from(&snapshot))?;
            } else {
                printer.note(format_args!(
                    "{:<10} after {}",
                    status.as_str(),
                    human_duration(start.elapsed())
                ));
            }
        }
        printer.spinner_message(format!("{id} {status}"));
        last = Some(snapshot);
    }
    printer.stop_spinner();
    let last = last.context("the in-process prediction ended without a status")?;
    // In `--async --json` every status, the final one included, is already printed.
    let json = (!detach).then(|| PredictionBody::from(&last));
    Ok(print_final(printer, &view(&last), json.as_ref())?)
}

fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The text view of an in-process snapshot.
fn view(p: &MockPrediction) -> View {
    View {
        id: p.id,
        status: p.status,
        input: Some(p.input.as_ref().clone()),
        result: p.output.as_ref().map(|o| o.result.clone()),
        error: p.error.as_ref().map(|e| e.message.clone()),
        created_at: Some(timestamp(p.created_at)),
        started_at: p.started_at.map(timestamp),
        completed_at: p.completed_at.map(timestamp),
        predict_time: p.predict_time,
    }
}
