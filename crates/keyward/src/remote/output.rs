//! How the remote commands show results: aligned tables with colour on a terminal, plain tables
//! when piped or with `NO_COLOR`, CSV, or JSON for scripts.

use std::io::{IsTerminal, Write};

use clap::{Args, ValueEnum};
use comfy_table::{Cell, Color, ContentArrangement, Table, presets};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// `--json` and `--output` on every listing.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Print JSON (Graph's objects, every page) for scripts; the same as --output json.
    #[arg(long, global = true)]
    pub json: bool,
    /// table: aligned columns (colour on a terminal); csv: a header row, then one row per item;
    /// json: Graph's objects.
    #[arg(long, short = 'o', value_enum, global = true, value_name = "FORMAT")]
    pub output: Option<Format>,
}

impl OutputArgs {
    pub fn format(&self) -> Format {
        if self.json { Format::Json } else { self.output.unwrap_or(Format::Table) }
    }
}

/// Whether standard output gets colour: a terminal, and no `NO_COLOR`.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|it| it.is_empty())
}

/// Writes a line to standard output; false once it is closed (a pipe's reader has gone).
pub fn print(text: &str) -> bool {
    writeln!(std::io::stdout(), "{text}").and_then(|()| std::io::stdout().flush()).is_ok()
}

/// A message for people on standard error; directory and server text in it cannot drive the
/// terminal (see [`printable`]).
pub fn note(text: &str) {
    let lines: Vec<String> = text.lines().map(printable).collect();
    let _ = writeln!(std::io::stderr(), "{}", lines.join("\n"));
}

/// Writes `value` as indented JSON; false once standard output is closed.
pub fn print_json(value: &Value) -> bool {
    print(&serde_json::to_string_pretty(value).unwrap_or_default())
}

/// A table of text cells; a cell may carry a tone for colour.
#[derive(Debug, Default)]
pub struct Rows {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<(String, Tone)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Plain,
    Good,
    Warn,
    Bad,
}

impl Rows {
    pub fn new(headers: &[&str]) -> Rows {
        Rows { headers: headers.iter().map(|it| (*it).to_owned()).collect(), rows: Vec::new() }
    }

    pub fn push(&mut self, cells: Vec<String>) {
        self.rows.push(cells.into_iter().map(|it| (it, Tone::Plain)).collect());
    }

    pub fn push_toned(&mut self, cells: Vec<(String, Tone)>) {
        self.rows.push(cells);
    }

    /// Prints as a table or CSV (JSON is the caller's: it prints the objects themselves);
    /// false once standard output is closed.
    pub fn print(&self, format: Format) -> bool {
        match format {
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(std::io::stdout());
                let mut written = if self.headers.is_empty() { Ok(()) } else { writer.write_record(&self.headers) };
                for row in &self.rows {
                    written = written.and_then(|()| writer.write_record(row.iter().map(|(text, _)| text)));
                }
                written.is_ok() && writer.flush().is_ok()
            }
            Format::Table | Format::Json => {
                if self.rows.is_empty() {
                    note("(none)");
                    return true;
                }
                print(&self.render(colour()))
            }
        }
    }

    fn render(&self, colour: bool) -> String {
        let mut table = Table::new();
        if colour {
            table.load_style(presets::UTF8_HORIZONTAL_ONLY).set_content_arrangement(ContentArrangement::Dynamic);
            if !self.headers.is_empty() {
                table.set_header(self.headers.iter().map(|it| Cell::new(it).fg(Color::Cyan)));
            }
        } else {
            table.force_no_tty().load_style(presets::NOTHING);
            if !self.headers.is_empty() {
                table.set_header(self.headers.iter().map(Cell::new));
            }
        }
        for row in &self.rows {
            table.add_row(row.iter().map(|(text, tone)| {
                let cell = Cell::new(printable(text));
                match (colour, tone) {
                    (true, Tone::Good) => cell.fg(Color::Green),
                    (true, Tone::Warn) => cell.fg(Color::Yellow),
                    (true, Tone::Bad) => cell.fg(Color::Red),
                    _ => cell,
                }
            }));
        }
        table.to_string().lines().map(str::trim_end).collect::<Vec<_>>().join("\n")
    }
}

/// Text from the directory as a terminal shows it: control characters (escape sequences that
/// could repaint the screen or fake a line, newlines that would break a row) become U+FFFD.
pub fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect()
}

/// A JSON value as a table cell: strings bare, arrays joined, objects as JSON.
/// Also for names in messages: control characters are replaced (see [`printable`]).
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(it) => printable(it),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// Objects as a table with these properties as columns (dotted paths reach into objects).
pub fn objects(items: &[Value], columns: &[&str]) -> Rows {
    let mut rows = Rows::new(columns);
    for item in items {
        rows.push(columns.iter().map(|path| cell(&lookup(item, path))).collect());
    }
    rows
}

pub fn lookup(item: &Value, path: &str) -> Value {
    path.split('.').fold(item.clone(), |value, key| value.get(key).cloned().unwrap_or(Value::Null))
}

/// Prints objects in the chosen format with these columns.
pub fn show_objects(items: &[Value], columns: &[&str], format: Format) {
    match format {
        Format::Json => _ = print_json(&Value::Array(items.to_vec())),
        _ => _ = objects(items, columns).print(format),
    }
}

/// Prints one object as property/value lines (or JSON).
pub fn show_object(item: &Value, format: Format) {
    match format {
        Format::Json => _ = print_json(item),
        _ => {
            let mut rows = Rows::new(&["property", "value"]);
            if let Some(map) = item.as_object() {
                for (key, value) in map {
                    if key.starts_with("@odata") {
                        continue;
                    }
                    rows.push(vec![key.clone(), cell(value)]);
                }
            }
            rows.print(format);
        }
    }
}

/// A spinner on standard error while waiting, only on a terminal.
pub fn spinner(message: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner().with_message(message.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// A progress bar with rate and time left on standard error, only on a terminal.
pub fn progress(total: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} rows  {per_sec}  {eta} left  {msg}")
    {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tables_are_aligned_without_escape_codes() {
        let mut rows = Rows::new(&["user", "result"]);
        rows.push_toned(vec![("a@x.test".into(), Tone::Plain), ("changed".into(), Tone::Good)]);
        rows.push_toned(vec![("longer.name@x.test".into(), Tone::Plain), ("failed".into(), Tone::Bad)]);
        let text = rows.render(false);
        assert!(!text.contains('\u{1b}'), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let column = lines[0].find("result").expect("header");
        assert_eq!(lines[1].find("changed"), Some(column), "{text}");
        assert_eq!(lines[2].find("failed"), Some(column), "{text}");
    }

    #[test]
    fn directory_text_cannot_drive_the_terminal() {
        let mut rows = Rows::new(&["displayName"]);
        rows.push(vec!["Eve\u{1b}[2J\u{1b}[31mAdmin\nforged line".into()]);
        let text = rows.render(false);
        assert!(!text.contains('\u{1b}') && text.lines().count() == 2, "{text:?}");
        assert!(text.contains("Eve\u{fffd}[2J"), "{text:?}");
    }

    #[test]
    fn cells_flatten_json() {
        assert_eq!(cell(&serde_json::json!(["a", "b"])), "a, b");
        assert_eq!(cell(&serde_json::json!(null)), "");
        assert_eq!(cell(&serde_json::json!(true)), "true");
        assert_eq!(lookup(&serde_json::json!({"a": {"b": 1}}), "a.b"), serde_json::json!(1));
    }
}
