//! The server's log lines, gathered in memory and written to standard error by a thread of their
//! own, many lines a write.
//!
//! Written by each request as it logged, the request's line was a `write` system call on the
//! request's thread: an API read served 14,295 and 14,480 requests a second with its line, 16,627
//! and 17,303 without (`keyward-bench api-read`, SQLite, the server on one core). Now the thread
//! writes what is waiting about every [`EVERY`], one `write` for all of it, lines in order. Past
//! [`MOST`] bytes waiting, the request whose line adds them writes them itself, also in one
//! `write`: memory stays bounded, and a standard error that blocks holds up the requests that log,
//! as it did before. `keyward serve` writes what is waiting when it stops or its start fails, and
//! a panic writes it before its message. What it does not cover: an end without unwinding (a
//! signal without a handler such as `SIGKILL` or `SIGHUP`, an abort) loses the lines of its last
//! 20 ms or so, and where standard output and standard error go to one place, a line the server
//! prints on standard output can come before log lines logged earlier.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How often the thread writes what is waiting.
const EVERY: Duration = Duration::from_millis(20);

/// Bytes waiting past which the line that adds them writes them too: about 20 ms of lines at
/// 20,000 requests a second.
const MOST: usize = 64 << 10;

/// The lines not yet written, the buffer being written (which also keeps the writes in order: one
/// at a time), where they go, and whether a thread writes them.
#[derive(Debug)]
pub(crate) struct Gathered {
    waiting: Mutex<Vec<u8>>,
    writing: Mutex<Vec<u8>>,
    out: fn(&[u8]),
    is_threaded: AtomicBool,
}

/// The server's log.
pub(crate) static LOG: Gathered = Gathered::new(to_stderr);

/// As `tracing_subscriber` does: a log that cannot be written is not an error.
fn to_stderr(lines: &[u8]) {
    let _ = std::io::stderr().write_all(lines);
}

fn lock(mutex: &Mutex<Vec<u8>>) -> MutexGuard<'_, Vec<u8>> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Gathered {
    const fn new(out: fn(&[u8])) -> Gathered {
        Gathered {
            waiting: Mutex::new(Vec::new()),
            writing: Mutex::new(Vec::new()),
            out,
            is_threaded: AtomicBool::new(false),
        }
    }

    /// Starts the thread that writes the lines (once), and has a panic write them before its
    /// message. The log's writer, for `tracing_subscriber`. Without the thread (it could not
    /// start), every line is written at once.
    pub(crate) fn start(&'static self) -> &'static Gathered {
        static STARTED: Once = Once::new();
        STARTED.call_once(|| {
            let started = std::thread::Builder::new().name("keyward-log".into()).spawn(move || {
                loop {
                    std::thread::sleep(EVERY);
                    self.write_waiting();
                }
            });
            if started.is_ok() {
                self.is_threaded.store(true, Ordering::Release);
                let report = std::panic::take_hook();
                std::panic::set_hook(Box::new(move |info| {
                    self.write_waiting();
                    report(info);
                }));
            }
        });
        self
    }

    /// Writes the lines waiting, after any being written.
    pub(crate) fn write_waiting(&self) {
        let mut writing = lock(&self.writing);
        // Empty unless a write panicked: its lines are not written again after newer ones.
        writing.clear();
        std::mem::swap(&mut *lock(&self.waiting), &mut *writing);
        if !writing.is_empty() {
            (self.out)(&writing);
            writing.clear();
            // A burst (or one huge line) does not keep its memory.
            if writing.capacity() > 4 * MOST {
                writing.shrink_to(MOST);
            }
        }
    }
}

/// One line's writer.
#[derive(Debug)]
pub(crate) struct Line(&'static Gathered);

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut waiting = lock(&self.0.waiting);
        waiting.extend_from_slice(bytes);
        let is_due = waiting.len() >= MOST || !self.0.is_threaded.load(Ordering::Acquire);
        drop(waiting);
        if is_due {
            self.0.write_waiting();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl MakeWriter<'_> for &'static Gathered {
    type Writer = Line;

    fn make_writer(&self) -> Line {
        Line(self)
    }
}

/// The log lines' time, written as `tracing_subscriber`'s default (`SystemTime`) writes it,
/// `2026-12-07T16:33:00.123456Z`, without its formatting machinery: the date and time of day are
/// made once a second per thread, only the microseconds each line (the default's formatting was
/// about 2% of an API read's instructions).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LineTime;

impl tracing_subscriber::fmt::time::FormatTime for LineTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        line_time(now.as_secs(), now.subsec_micros(), w)
    }
}

/// The server's log lines in `tracing_subscriber`'s default format with [`LineTime`]: the
/// request's line, the one logged most (a line a request), written straight to the line's buffer,
/// every other line by the default formatter. The text is the same either way (a test compares
/// them): the default formatter's field writer styles each name and `=` for a terminal even where
/// there are no colours (plain text then), which was about 4% of an API read's instructions.
#[derive(Debug)]
pub(crate) struct LineFormat(tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Full, LineTime>);

impl Default for LineFormat {
    fn default() -> LineFormat {
        LineFormat(tracing_subscriber::fmt::format().with_timer(LineTime))
    }
}

/// The request's line's fields (`keyward_http::context`), in order.
const REQUEST_FIELDS: [&str; 6] = ["message", "request_id", "method", "path", "status", "micros"];

/// Whether `meta` is the request's line: written here when its text needs no colour and no span
/// encloses it (neither is written here).
fn is_request_line(meta: &tracing::Metadata<'_>) -> bool {
    *meta.level() == tracing::Level::INFO
        && meta.target() == "keyward_http::context"
        && meta.fields().iter().map(|it| it.name()).eq(REQUEST_FIELDS)
}

#[cfg(test)]
static WRITTEN_HERE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for LineFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use tracing_subscriber::fmt::time::FormatTime;
        if writer.has_ansi_escapes() || !is_request_line(event.metadata()) || ctx.event_scope().is_some() {
            return self.0.format_event(ctx, writer, event);
        }
        #[cfg(test)]
        WRITTEN_HERE.fetch_add(1, Ordering::Relaxed);
        // As the default writes them: the time, the level padded to five, the target and `: `.
        if LineTime.format_time(&mut writer).is_err() {
            writer.write_str("<unknown time>")?;
        }
        writer.write_str("  INFO ")?;
        writer.write_str(event.metadata().target())?;
        writer.write_str(": ")?;
        let mut fields = Fields { writer: &mut writer, is_first: true, result: Ok(()) };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// Writes an event's fields as the default formatter's field writer does without colours: the
/// message as it reads (its terminal controls escaped as the default escapes them, when the
/// writer asks for it), then `name=value` with the value's `Debug` (a `%` field's `Display`),
/// separated by spaces.
struct Fields<'a, 'w> {
    writer: &'a mut tracing_subscriber::fmt::format::Writer<'w>,
    is_first: bool,
    result: std::fmt::Result,
}

impl Fields<'_, '_> {
    fn start(&mut self, field: &tracing::field::Field) -> std::fmt::Result {
        if !std::mem::take(&mut self.is_first) {
            self.writer.write_char(' ')?;
        }
        if field.name() != "message" {
            self.writer.write_str(field.name())?;
            self.writer.write_char('=')?;
        }
        Ok(())
    }
}

impl tracing::field::Visit for Fields<'_, '_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if self.result.is_ok() {
            self.result = self.start(field).and_then(|()| {
                if field.name() == "message" && self.writer.sanitizes_ansi_escapes() {
                    std::fmt::Write::write_fmt(&mut Escaping(&mut *self.writer), format_args!("{value:?}"))
                } else {
                    write!(self.writer, "{value:?}")
                }
            });
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if self.result.is_ok() {
            if field.name() == "message" {
                // As the default writes a message given as text: through `record_debug`.
                return self.record_debug(field, &format_args!("{value}"));
            }
            self.result = self.start(field).and_then(|()| write!(self.writer, "{value:?}"));
        }
    }
}

/// Writes what is written to it to `inner` with terminal controls escaped, as
/// `tracing_subscriber` escapes a message: ESC, BEL, BS, FF and DEL as `\x..`, the C1 controls
/// (U+0080 to U+009F) as `\u{..}`.
struct Escaping<'a, W: std::fmt::Write>(&'a mut W);

fn is_escaped(it: char) -> bool {
    matches!(it, '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' | '\u{80}'..='\u{9f}')
}

impl<W: std::fmt::Write> std::fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        // Most text has nothing to escape: written whole.
        if !text.chars().any(is_escaped) {
            return self.0.write_str(text);
        }
        for it in text.chars() {
            match it {
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", it as u32)?,
                _ if is_escaped(it) => write!(self.0, "\\x{:02x}", it as u32)?,
                _ => self.0.write_char(it)?,
            }
        }
        Ok(())
    }
}

thread_local! {
    /// The second last written on this thread and its text up to the seconds' dot.
    static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// Writes `secs` after the epoch and `micros` as a line's time to `out`.
fn line_time(secs: u64, micros: u32, out: &mut impl std::fmt::Write) -> std::fmt::Result {
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != secs {
            *second = secs;
            *text = second_text(secs);
        }
        let mut digits = [b'0'; 7];
        digits[6] = b'Z';
        let mut rest = micros.min(999_999);
        for digit in digits[..6].iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.write_str(text)?;
        // ASCII digits and `Z`.
        out.write_str(std::str::from_utf8(&digits).map_err(|_| std::fmt::Error)?)
    })
}

/// `2026-12-07T16:33:00.` for `secs` after the epoch, the year in four digits as the default
/// writes years 0 to 9999; a clock past year 9999 (never `now()`'s) is written as its seconds.
fn second_text(secs: u64) -> String {
    let at = i64::try_from(secs).ok().and_then(|it| time::OffsetDateTime::from_unix_timestamp(it).ok());
    match at {
        // Graph's timestamps are the same text to the second, then `Z`.
        Some(at) if (0..=9999).contains(&at.year()) => {
            let mut text = keyward_core::profile::graph_timestamp(at);
            text.pop();
            text.push('.');
            text
        }
        _ => format!("+{secs}s."),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn line_times_read_as_the_default_timer_writes_them() {
        use tracing_subscriber::fmt::time::FormatTime;
        let written = |timer: &dyn FormatTime| {
            let mut text = String::new();
            timer.format_time(&mut tracing_subscriber::fmt::format::Writer::new(&mut text)).expect("time");
            text
        };
        // The same second from both (tried again if one falls on a second's edge).
        let (ours, default) = (0..100)
            .map(|_| (written(&LineTime), written(&tracing_subscriber::fmt::time::SystemTime)))
            .find(|(ours, default)| ours[..20] == default[..20])
            .expect("one pair within a second");
        assert_eq!(ours.len(), default.len(), "{ours} {default}");
        assert!(ours.ends_with('Z') && ours[20..26].bytes().all(|it| it.is_ascii_digit()), "{ours}");
        // Known instants, each a new second for this thread, then the same second again.
        for (secs, micros, text) in [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (1_796_660_380, 7, "2026-12-07T16:19:40.000007Z"),
            (1_796_660_380, 999_999, "2026-12-07T16:19:40.999999Z"),
            (951_782_400, 120_000, "2000-02-29T00:00:00.120000Z"),
            (253_402_300_799, 1, "9999-12-31T23:59:59.000001Z"),
        ] {
            let mut written = String::new();
            line_time(secs, micros, &mut written).expect("time");
            assert_eq!(written, text);
        }
    }
    /// Lines logged by `log` through a subscriber with `format`, each line's time as `TIME`.
    fn logged<E>(format: E, ansi: bool, log: impl FnOnce()) -> String
    where
        E: for<'a> tracing_subscriber::fmt::FormatEvent<
                tracing_subscriber::Registry,
                tracing_subscriber::fmt::format::DefaultFields,
            > + Send
            + Sync
            + 'static,
    {
        let lines = std::sync::Arc::new(Mutex::new(Vec::new()));
        let into = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Captured(into.clone()))
            .with_ansi(ansi)
            .event_format(format)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(lock(&lines).clone()).expect("utf-8");
        // The time: the line's first 27 characters, after a colour's code when there are colours.
        let without_time = |line: &str| {
            let at = if line.starts_with('\u{1b}') { line.find('m').map_or(0, |it| it + 1) } else { 0 };
            format!("{}TIME{}\n", &line[..at], &line[at + 27..])
        };
        text.lines().map(without_time).collect()
    }

    struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the server logs: request lines (written by `LineFormat` itself) and others, in and
    /// out of a span.
    fn server_lines() {
        let request = |path: &str, status: u16, micros: u64| {
            tracing::info!(
                target: "keyward_http::context",
                request_id = %"2e0fc421-55e8-4513-b3de-0bb978055606",
                method = %"GET",
                path = %path,
                status,
                micros,
                "request"
            );
        };
        request("/v1.0/users/02b515c9-512b-4f44-8a6c-d4b626d92ee0", 200, 523);
        request("/v1.0/users?$filter=startswith(displayName,'A%20b')", 400, 0);
        request("/", 500, u64::MAX);
        tracing::info!(target: "keyward_http::context", path = %"/", "request");
        // The request's fields with another message, its terminal controls escaped.
        tracing::info!(
            target: "keyward_http::context",
            request_id = %"r",
            method = %"GET",
            path = %"/",
            status = 200_u16,
            micros = 1_u64,
            "request {} \u{9b}2J \x07\x08\x0c\x7f done",
            "\x1b[31m"
        );
        tracing::warn!(reason = "a \"quoted\" str", count = 3_u64, "could not \x1b[31m do it");
        let span = tracing::info_span!("turn", n = 1);
        span.in_scope(|| request("/v1.0/me", 200, 17));
    }

    #[test]
    fn the_request_line_reads_as_the_default_format_writes_it() {
        let default = || tracing_subscriber::fmt::format().with_timer(LineTime);
        let before = WRITTEN_HERE.load(Ordering::Relaxed);
        let ours = logged(LineFormat::default(), false, server_lines);
        let theirs = logged(default(), false, server_lines);
        assert_eq!(ours, theirs);
        assert!(ours.starts_with(
            "TIME  INFO keyward_http::context: request request_id=2e0fc421-55e8-4513-b3de-0bb978055606 method=GET \
             path=/v1.0/users/02b515c9-512b-4f44-8a6c-d4b626d92ee0 status=200 micros=523\n"
        ));
        assert!(ours.contains(" status=500 micros=18446744073709551615\n"), "{ours}");
        assert!(ours.contains(" request \\x1b[31m \\u{9b}2J \\x07\\x08\\x0c\\x7f done "), "{ours}");
        // The four request lines outside the span, not the line with other fields nor the one
        // in the span (other tests run in parallel: at least four).
        assert!(WRITTEN_HERE.load(Ordering::Relaxed) - before >= 4);
        // With colours, the default formatter writes everything.
        let coloured = logged(LineFormat::default(), true, server_lines);
        assert_eq!(coloured, logged(default(), true, server_lines));
        assert!(coloured.starts_with("\u{1b}[2mTIME\u{1b}[0m \u{1b}[32m INFO"), "{coloured}");
    }

    use super::*;

    static WRITTEN: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    fn to_written(lines: &[u8]) {
        lock(&WRITTEN).extend_from_slice(lines);
    }

    static GATHERED: Gathered = Gathered::new(to_written);

    /// Lines wait, in order, until written; past `MOST` bytes the line that adds them writes
    /// them; without a thread, every line is written at once. (One test: they share `WRITTEN`.)
    #[test]
    fn lines_are_written_in_order_when_asked_or_when_too_many_wait() {
        GATHERED.is_threaded.store(true, Ordering::Release);
        (&GATHERED).make_writer().write_all(b"first\n").expect("write");
        (&GATHERED).make_writer().write_all(b"second\n").expect("write");
        assert!(lock(&WRITTEN).is_empty(), "a line was written before its time");
        GATHERED.write_waiting();
        assert_eq!(&*lock(&WRITTEN), b"first\nsecond\n");
        assert!(lock(&GATHERED.waiting).is_empty(), "written lines still wait");
        assert!(lock(&GATHERED.writing).is_empty(), "written lines are kept");

        lock(&WRITTEN).clear();
        let mut line = (&GATHERED).make_writer();
        line.write_all(&vec![b'.'; MOST - 1]).expect("write");
        assert!(lock(&WRITTEN).is_empty(), "lines below the limit were written");
        line.write_all(b"\n").expect("write");
        assert_eq!(lock(&WRITTEN).len(), MOST, "a full buffer was left waiting");
        assert!(lock(&GATHERED.waiting).is_empty());

        lock(&WRITTEN).clear();
        GATHERED.is_threaded.store(false, Ordering::Release);
        (&GATHERED).make_writer().write_all(b"alone\n").expect("write");
        assert_eq!(&*lock(&WRITTEN), b"alone\n", "without a thread a line waited");
    }
}
