//! [`Interrupt`]: Ctrl-C (SIGINT) as a future, listened for from the moment it is
//! made, so that a signal that arrives before the command first awaits it is not
//! taken by the default handler (which would end the process with no word).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Ctrl-C, caught from [`listen`](Self::listen) on.
pub(crate) struct Interrupt {
    signal: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>,
    state: State,
}

#[derive(Clone, Copy)]
enum State {
    Listening,
    /// Caught already: [`Interrupt::recv`] resolves at once.
    Fired,
    /// The handler could not be installed: [`Interrupt::recv`] never resolves.
    Broken,
}

impl Interrupt {
    /// Starts listening: tokio's `ctrl_c` installs its handler when first polled,
    /// so it is polled once here.
    pub(crate) fn listen() -> Self {
        let mut signal: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> =
            Box::pin(tokio::signal::ctrl_c());
        let state = match signal
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Pending => State::Listening,
            Poll::Ready(Ok(())) => State::Fired,
            Poll::Ready(Err(e)) => {
                crate::output::error_line(format_args!(
                    "warning: cannot catch Ctrl-C ({e}); it will end the process as usual"
                ));
                State::Broken
            }
        };
        Self { signal, state }
    }

    /// Resolves on Ctrl-C (at once if it came already); never, if the handler could
    /// not be installed. Cancel-safe: a `select!` may drop it and call it again.
    pub(crate) async fn recv(&mut self) {
        match self.state {
            State::Fired => return,
            State::Broken => return std::future::pending().await,
            State::Listening => {}
        }
        match self.signal.as_mut().await {
            Ok(()) => self.state = State::Fired,
            Err(e) => {
                crate::output::error_line(format_args!("warning: lost the Ctrl-C handler ({e})"));
                self.state = State::Broken;
                std::future::pending::<()>().await;
            }
        }
    }
}
