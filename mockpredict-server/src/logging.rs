//! The binary's log output (part of `main.rs`, not of the library): where lines go
//! and how the per-request access line is written cheaply.
//!
//! Two costs of one access line per request, measured under load (BENCHMARKS.md,
//! "HTTP load"): a `write(2)` to stderr per line under the process-wide stderr lock,
//! which the runtime's workers contend for, and the generic text formatter (styles,
//! escaping, `fmt` machinery for a timestamp). So:
//!
//! - [`LogWriter`] appends access lines to a buffer that a `log-flush` thread writes
//!   out at most [`FLUSH_AFTER`] later (or at once past [`FLUSH_AT`] bytes); every
//!   other line flushes the buffer, then goes straight to stderr, in order. The
//!   binary calls [`flush`] before it exits. A process killed with SIGKILL loses at
//!   most the last [`FLUSH_AFTER`] of access lines; everything else is unbuffered.
//! - [`AccessLine`], the server's [`AccessLog`] in the text format without colours,
//!   writes each access line itself, without a `tracing` event (~1,200 instructions
//!   instead of ~4,000), byte for byte as the default formatter writes the event (a
//!   test compares them).
//! - [`Text`] does the same for access events that still arrive as events (another
//!   embedder's, or a test's), and hands every other event to the default formatter.

use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mockpredict_server::{ACCESS_TARGET, AccessLog, AccessRecord, TracingAccessLog};
use tracing::field::{Field, Visit};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// Longest an access line waits in the buffer.
const FLUSH_AFTER: Duration = Duration::from_millis(50);
/// Buffered bytes that trigger a write at once.
const FLUSH_AT: usize = 32 * 1024;

/// Access lines not yet written, and the signal that the buffer became non-empty.
struct Buffer {
    /// A std `Mutex`: held for a copy, never across a write to stderr.
    lines: Mutex<Vec<u8>>,
    filled: Condvar,
}

static BUFFER: Buffer = Buffer {
    lines: Mutex::new(Vec::new()),
    filled: Condvar::new(),
};

impl Buffer {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // Bytes stay bytes even if a holder panicked.
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes out what is buffered, then `then` (if any), under one stderr lock taken
/// before the buffer's lock is released, so lines keep their order while other
/// threads go on appending.
fn write_out(mut lines: MutexGuard<'_, Vec<u8>>, then: Option<&[u8]>) -> io::Result<()> {
    let pending = std::mem::take(&mut *lines);
    let mut stderr = io::stderr().lock();
    drop(lines);
    // A failed write of buffered lines has no caller to tell; the direct line's
    // error is returned.
    let _ = stderr.write_all(&pending);
    match then {
        Some(line) => stderr.write_all(line),
        None => Ok(()),
    }
}

/// Writes every buffered access line to stderr now.
pub(crate) fn flush() {
    let _ = write_out(BUFFER.lock(), None);
}

fn flusher() {
    let mut lines = BUFFER.lock();
    loop {
        while lines.is_empty() {
            lines = BUFFER
                .filled
                .wait(lines)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(lines);
        // Gather what arrives meanwhile into one write. A dedicated thread, not
        // async code: it must run even while the runtime is busy or gone.
        std::thread::sleep(FLUSH_AFTER);
        let _ = write_out(BUFFER.lock(), None);
        lines = BUFFER.lock();
    }
}

/// The subscriber's writer: access lines buffered, everything else direct.
#[derive(Clone, Copy)]
pub(crate) struct LogWriter {
    buffered: bool,
}

impl LogWriter {
    /// Starts the flushing thread; without one, every line is written directly.
    pub(crate) fn new() -> Self {
        let buffered = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(flusher)
            .is_ok();
        Self { buffered }
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { buffered: false }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line {
            buffered: self.buffered && meta.target() == ACCESS_TARGET,
        }
    }
}

/// One formatted line on its way out (the formatter writes it in one `write_all`).
pub(crate) struct Line {
    buffered: bool,
}

impl Write for Line {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        append(&[data], self.buffered)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes one line given in `parts`: into the buffer when `buffered`, else out at
/// once (after what is buffered, to keep the order).
fn append(parts: &[&[u8]], buffered: bool) -> io::Result<()> {
    let mut lines = BUFFER.lock();
    if !buffered {
        return write_out(lines, Some(&parts.concat()));
    }
    let was_empty = lines.is_empty();
    for part in parts {
        lines.extend_from_slice(part);
    }
    if lines.len() > FLUSH_AT {
        return write_out(lines, None);
    }
    drop(lines);
    if was_empty {
        BUFFER.filled.notify_one();
    }
    Ok(())
}

/// The text format: the default one, with the access line written directly.
pub(crate) struct Text {
    default: format::Format<format::Full, tracing_subscriber::fmt::time::SystemTime>,
}

impl Text {
    pub(crate) fn new() -> Self {
        Self {
            default: format::Format::default(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for Text
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        // Colours, spans around the event, or another event: the default formatter.
        if writer.has_ansi_escapes()
            || meta.target() != ACCESS_TARGET
            || ctx.lookup_current().is_some()
        {
            return self.default.format_event(ctx, writer, event);
        }
        timestamp(&mut writer)?;
        write!(writer, " {:>5} {ACCESS_TARGET}: ", meta.level().as_str())?;
        let sanitize = writer.sanitizes_ansi_escapes();
        let mut fields = Fields {
            sanitize,
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

thread_local! {
    /// The last whole second formatted (`YYYY-MM-DDTHH:MM:SS`), per thread.
    static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// Now, as the default formatter writes it (`2026-11-26T07:21:43.122252Z`).
fn timestamp(writer: &mut Writer<'_>) -> fmt::Result {
    match timestamp_bytes() {
        Some(line) => writer.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?),
        None => tracing_subscriber::fmt::time::SystemTime.format_time(writer),
    }
}

/// Now, as the default formatter writes it (`2026-11-26T07:21:43.122252Z`), with the
/// calendar part computed once a second; `None` for a clock outside 1970–9999.
fn timestamp_bytes() -> Option<[u8; 27]> {
    let now = SystemTime::now();
    let since_epoch = now.duration_since(UNIX_EPOCH).ok()?;
    let secs = since_epoch.as_secs();
    let (cached, mut prefix) = SECOND.get();
    if cached != secs {
        let whole = humantime::format_rfc3339_seconds(now).to_string();
        // `YYYY-MM-DDTHH:MM:SSZ`; another shape (a year past 9999) takes the slow way.
        match whole.as_bytes().get(..19) {
            Some(p) if whole.len() == 20 => prefix.copy_from_slice(p),
            _ => return None,
        }
        SECOND.set((secs, prefix));
    }
    let mut line = [0u8; 27];
    line[..19].copy_from_slice(&prefix);
    line[19] = b'.';
    let mut micros = since_epoch.subsec_micros();
    for i in (20..26).rev() {
        // A digit: `micros % 10 < 10`.
        line[i] = b'0' + u8::try_from(micros % 10).unwrap_or(0);
        micros /= 10;
    }
    line[26] = b'Z';
    Some(line)
}

/// The access log of the text format, written without a `tracing` event: the same
/// bytes as [`TracingAccessLog`](mockpredict_server::TracingAccessLog)'s event through
/// the default formatter without colours (a test compares them), at a fraction of
/// the cost (no field visitor, no `fmt` machinery, no float formatting). The binary
/// uses it when the text format is on, colours are off, and the filter passes
/// `mockpredict_server::access` at `info` at start-up.
pub(crate) struct AccessLine {
    buffered: bool,
}

impl AccessLine {
    /// Lines go where [`LogWriter`] sends access lines.
    pub(crate) fn new(writer: &LogWriter) -> Self {
        Self {
            buffered: writer.buffered,
        }
    }
}

impl AccessLog for AccessLine {
    fn record(&self, r: &AccessRecord<'_>) {
        match timestamp_bytes() {
            Some(stamp) => access_line(&stamp, r, |line| {
                let _ = append(line, self.buffered);
            }),
            None => TracingAccessLog.record(r),
        }
    }
}

/// Hands `emit` the pieces of `r`'s line, stamped `stamp`.
fn access_line(stamp: &[u8; 27], r: &AccessRecord<'_>, emit: impl FnOnce(&[&[u8]])) {
    let mut status = [0u8; 20];
    let status = decimal(u64::from(r.status.as_u16()), &mut status);
    let mut ms = [0u8; 40];
    let slow_ms;
    let ms: &[u8] = match millis(r.duration, &mut ms) {
        Some(ms) => ms,
        None => {
            slow_ms = format!("{:?}", r.duration_ms());
            slow_ms.as_bytes()
        }
    };
    // Route labels are constant templates; one that needed escapes would be quoted
    // as `Debug` quotes it.
    let slow_route;
    let route: &[u8] = if plain_quoted(r.route) {
        r.route.as_bytes()
    } else {
        slow_route = format!("{:?}", r.route);
        &slow_route.as_bytes()[1..slow_route.len() - 1]
    };
    let mut id = [0u8; 36];
    let id: &[u8] = match r.prediction_id {
        Some(p) => p.as_uuid().hyphenated().encode_lower(&mut id).as_bytes(),
        None => b"",
    };
    let parts: [&[u8]; 12] = [
        stamp,
        b"  INFO mockpredict_server::access: request method=",
        r.method.as_str().as_bytes(),
        b" route=\"",
        route,
        b"\" status=",
        status,
        b" duration_ms=",
        ms,
        if id.is_empty() {
            b""
        } else {
            b" prediction_id="
        },
        id,
        b"\n",
    ];
    // Gathered on the stack (a line is ~190 bytes), so the shared buffer's lock is
    // held for one copy; a longer one (an odd method) is passed in pieces.
    let mut line = [0u8; 256];
    let mut len = 0;
    for part in parts {
        match line.get_mut(len..len + part.len()) {
            Some(to) => to.copy_from_slice(part),
            None => return emit(&parts),
        }
        len += part.len();
    }
    emit(&[&line[..len]]);
}

/// Whether `s` is quoted as is by `Debug` (printable ASCII, no `"` or `\\`).
fn plain_quoted(s: &str) -> bool {
    s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
}

/// `value` in decimal digits, at the end of `buf`.
fn decimal(mut value: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        // A digit: `value % 10 < 10`.
        buf[i] = b'0' + u8::try_from(value % 10).unwrap_or(0);
        value /= 10;
        if value == 0 {
            return &buf[i..];
        }
    }
}

/// A duration in milliseconds as `f64`'s `Debug` writes `nanos as f64 / 1e6`
/// (`0.011588`, `12.0`), from the integer nanoseconds: for 100 ns ≤ d < 2^52 ns
/// (52 days) the shortest decimal that reads back as that `f64` is the exact one, so
/// no float formatting is needed. `None` outside that range (`Debug` switches to
/// `1e-5` below 1e-4; far above, the exact decimal may be longer than the shortest).
fn millis(d: Duration, buf: &mut [u8; 40]) -> Option<&[u8]> {
    let nanos = u64::try_from(d.as_nanos()).ok()?;
    if !(100..1 << 52).contains(&nanos) {
        return None;
    }
    let mut whole = [0u8; 20];
    let whole = decimal(nanos / 1_000_000, &mut whole);
    let mut frac = nanos % 1_000_000;
    let mut digits = 6;
    if frac == 0 {
        digits = 1; // `12.0`
    } else {
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
    }
    let end = whole.len() + 1 + digits;
    buf[..whole.len()].copy_from_slice(whole);
    buf[whole.len()] = b'.';
    for i in (whole.len() + 1..end).rev() {
        // A digit: `frac % 10 < 10`.
        buf[i] = b'0' + u8::try_from(frac % 10).unwrap_or(0);
        frac /= 10;
    }
    Some(&buf[..end])
}

/// Writes fields as the default formatter does (`message`, then ` name=value`, strings
/// quoted), without its styling layer.
struct Fields<'w, 'a> {
    /// Whether the message's terminal control characters are escaped, as the default
    /// formatter does.
    sanitize: bool,
    writer: &'w mut Writer<'a>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn name(&mut self, field: &Field) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.writer.write_char(' ')?;
        }
        if field.name() != "message" {
            self.writer.write_str(field.name())?;
            self.writer.write_char('=')?;
        }
        Ok(())
    }
}

impl Fields<'_, '_> {
    fn message(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.result = self.name(field).and_then(|()| {
            if self.sanitize {
                write!(Escaping(self.writer), "{value:?}")
            } else {
                write!(self.writer, "{value:?}")
            }
        });
    }
}

/// The default formatter's escaping of messages (`tracing-subscriber`'s private
/// `EscapingWriter`): terminal control characters become visible escapes.
struct Escaping<'w, 'a>(&'w mut Writer<'a>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            match ch {
                '\x1b' => self.0.write_str("\\x1b")?,
                '\x07' => self.0.write_str("\\x07")?,
                '\x08' => self.0.write_str("\\x08")?,
                '\x0c' => self.0.write_str("\\x0c")?,
                '\x7f' => self.0.write_str("\\x7f")?,
                ch if ('\u{80}'..='\u{9f}').contains(&ch) => {
                    write!(self.0, "\\u{{{:x}}}", u32::from(ch))?;
                }
                ch => self.0.write_char(ch)?,
            }
        }
        Ok(())
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        if field.name() == "message" {
            // ASCII without the control characters `Escaping` rewrites is written as is.
            let plain = value
                .bytes()
                .all(|b| b.is_ascii() && !matches!(b, 0x1b | 0x07 | 0x08 | 0x0c | 0x7f));
            if plain {
                self.result = self.name(field).and_then(|()| self.writer.write_str(value));
                return;
            }
            return self.message(field, &format_args!("{value}"));
        }
        self.result = self.name(field).and_then(|()| {
            // Plain printable ASCII quotes as-is; anything else needs Debug's escapes.
            if value
                .bytes()
                .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
            {
                self.writer.write_char('"')?;
                self.writer.write_str(value)?;
                self.writer.write_char('"')
            } else {
                write!(self.writer, "{value:?}")
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.result.is_err() {
            return;
        }
        self.result = self.name(field).and_then(|()| {
            let mut digits = [0u8; 20];
            let digits = decimal(value, &mut digits);
            self.writer
                .write_str(std::str::from_utf8(digits).map_err(|_| fmt::Error)?)
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        if field.name() == "message" {
            return self.message(field, value);
        }
        self.result = self
            .name(field)
            .and_then(|()| write!(self.writer, "{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A writer into a shared Vec.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn emit() {
        let id = mockpredict_core::PredictionId::new_v4();
        // The same shape as `App::handle`'s line; `module_path` must match too.
        tracing::info!(
            target: "mockpredict_server::access",
            method = %http::Method::POST,
            route = "/predictions/predict",
            status = 202u16,
            duration_ms = 0.011588,
            prediction_id = Some(tracing::field::display(id)),
            "request"
        );
        tracing::info!(
            target: "mockpredict_server::access",
            method = %http::Method::GET,
            route = "/odd \"route\"\n",
            status = 404u16,
            duration_ms = 1e-7,
            prediction_id = None::<tracing::field::DisplayValue<String>>,
            "request"
        );
        tracing::info!(
            target: "mockpredict_server::access",
            status = 500u16,
            "escape \x1b[31m{}\u{85}",
            "\x07"
        );
        tracing::info!(
            target: "mockpredict_server::access",
            message = "a str \x1b message",
            ok = true
        );
        tracing::info!(
            target: "mockpredict_server::access",
            method = %http::Method::GET,
            message = "request",
            status = 200u16
        );
        tracing::info!(answer = 42, "not an access line");
    }

    fn capture(fast: bool) -> String {
        let out = Capture::default();
        let sink = out.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || sink.clone());
        let dispatch = if fast {
            tracing::Dispatch::new(builder.event_format(Text::new()).finish())
        } else {
            tracing::Dispatch::new(builder.finish())
        };
        tracing::dispatcher::with_default(&dispatch, emit);
        let bytes = out.0.lock().expect("lock").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn access_lines_are_written_as_the_default_formatter_writes_them() {
        // Same text after the timestamp (`2026-11-26T07:21:43.122252Z`, 27 bytes).
        let strip = |log: &str| -> Vec<String> {
            log.lines()
                .map(|l| {
                    assert_eq!(l.as_bytes()[26], b'Z', "{l}");
                    l[27..].to_owned()
                })
                .collect()
        };
        // The prediction IDs differ between the two runs.
        let anonymous = |lines: Vec<String>| -> Vec<String> {
            lines
                .into_iter()
                .map(|l| match l.split_once("prediction_id=") {
                    Some((head, id)) => {
                        assert_eq!(id.len(), 36, "{l}");
                        format!("{head}prediction_id=<id>")
                    }
                    None => l,
                })
                .collect()
        };
        let fast = anonymous(strip(&capture(true)));
        let default = anonymous(strip(&capture(false)));
        assert_eq!(fast.len(), 6, "{fast:#?}");
        assert_eq!(fast, default);
        assert_eq!(
            fast[0],
            "  INFO mockpredict_server::access: request method=POST \
             route=\"/predictions/predict\" status=202 duration_ms=0.011588 prediction_id=<id>"
        );
    }

    /// `n as f64 / 1e6` as `Debug` writes it.
    fn debug_ms(n: u64) -> String {
        format!("{:?}", n as f64 / 1e6)
    }

    #[test]
    fn millis_are_written_as_f64_debug_writes_them() {
        let fast = |n: u64| {
            let mut buf = [0u8; 40];
            millis(Duration::from_nanos(n), &mut buf)
                .map(|b| String::from_utf8(b.to_vec()).expect("ascii"))
        };
        let edges = [
            100,
            101,
            999,
            1_000,
            5_919,
            11_588,
            100_000,
            999_999,
            1_000_000,
            1_000_001,
            1_234_500,
            12_000_000_000,
            86_400_000_000_000,
            (1 << 52) - 1,
        ];
        for n in edges {
            assert_eq!(fast(n).as_deref(), Some(debug_ms(n).as_str()), "{n} ns");
        }
        // Every magnitude, pseudo-randomly (a fixed LCG: the same cases each run).
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..200_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let n = (x >> 12) >> (x % 52);
            match fast(n) {
                Some(s) => assert_eq!(s, debug_ms(n), "{n} ns"),
                None => assert!(!(100..1 << 52).contains(&n), "{n} ns has no fast form"),
            }
        }
        // Outside the exact range the caller falls back to `Debug` itself.
        assert_eq!(fast(0), None);
        assert_eq!(fast(99), None);
        assert_eq!(fast(1 << 52), None);
    }

    #[test]
    fn fast_access_lines_are_the_default_formatters_bytes() {
        let id = mockpredict_core::PredictionId::new_v4();
        let odd = http::Method::from_bytes(b"PURGE").expect("a token");
        // A line longer than the stack buffer goes out in pieces.
        let long = http::Method::from_bytes(&[b'X'; 300]).expect("a token");
        let records = [
            AccessRecord::new(
                &http::Method::POST,
                "/predictions/predict",
                http::StatusCode::ACCEPTED,
                Duration::from_nanos(11_588),
            )
            .with_prediction_id(Some(id)),
            AccessRecord::new(
                &http::Method::GET,
                "unmatched",
                http::StatusCode::NOT_FOUND,
                Duration::from_nanos(42),
            ),
            AccessRecord::new(
                &odd,
                "/odd \"route\"\n",
                http::StatusCode::METHOD_NOT_ALLOWED,
                Duration::from_secs(3),
            ),
            AccessRecord::new(
                &long,
                "unmatched",
                http::StatusCode::NOT_FOUND,
                Duration::from_micros(1500),
            )
            .with_prediction_id(Some(id)),
            AccessRecord::new(
                &http::Method::GET,
                "/predictions/predict/{id}",
                http::StatusCode::OK,
                Duration::from_secs(100 * 86_400),
            )
            .with_prediction_id(Some(id)),
        ];
        for r in &records {
            let out = Capture::default();
            let sink = out.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || sink.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || TracingAccessLog.record(r));
            let default = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
            let stamp: [u8; 27] = default.as_bytes()[..27].try_into().expect("a timestamp");
            let mut fast = Vec::new();
            access_line(&stamp, r, |parts| fast = parts.concat());
            assert_eq!(String::from_utf8(fast).expect("utf-8"), default);
        }
    }

    #[test]
    fn timestamps_look_like_the_default_ones() {
        let stamp = |fast: bool| {
            let mut out = String::new();
            let mut w = Writer::new(&mut out);
            if fast {
                timestamp(&mut w).expect("formats");
            } else {
                tracing_subscriber::fmt::time::SystemTime
                    .format_time(&mut w)
                    .expect("formats");
            }
            out
        };
        // The same second, unless it ticked over between the two; then try again.
        for _ in 0..3 {
            let (fast, default) = (stamp(true), stamp(false));
            assert_eq!(fast.len(), default.len(), "{fast} vs {default}");
            assert!(fast.ends_with('Z') && fast.as_bytes()[19] == b'.', "{fast}");
            if fast[..19] == default[..19] {
                return;
            }
        }
        panic!("the fast timestamp names another second than the default one");
    }
}
