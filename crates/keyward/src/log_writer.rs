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
