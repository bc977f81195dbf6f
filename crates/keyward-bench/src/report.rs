//! One line per workload: what was measured, its limit measured in the same run, the ratio, the
//! target and whether it is met. Printed as a Markdown table row, so a run pastes into
//! docs/performance.md.

/// A workload's result.
#[derive(Debug, Clone)]
pub struct Line {
    /// The workload and where it ran ("api-read, SQLite").
    pub workload: String,
    /// The figure ("3,775 req/s, p99 17 ms").
    pub figure: String,
    /// The limit, measured in the same run ("bare axum handler 75,700 req/s").
    pub limit: String,
    /// The ratio as shown ("5%", "500×").
    pub ratio: String,
    /// The target as stated ("≥ 50%").
    pub target: String,
    /// Whether the target is met; `None` for a measurement with no target of its own (printed
    /// as "no target", not counted in the summary).
    pub met: Option<bool>,
}

impl Line {
    pub fn print(&self) {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            self.workload,
            self.figure,
            self.limit,
            self.ratio,
            self.target,
            match self.met {
                Some(true) => "met",
                Some(false) => "not met",
                None => "no target",
            }
        );
    }
}

pub fn print_header() {
    println!("| workload | figure | limit, same run | ratio | target | status |");
    println!("|---|---|---|---|---|---|");
}

pub fn print_summary(lines: &[Line]) {
    let targets = lines.iter().filter(|it| it.met.is_some()).count();
    let met = lines.iter().filter(|it| it.met == Some(true)).count();
    println!("{met} of {targets} targets met.");
}

/// `part / whole` as a whole percentage.
pub fn percent(part: f64, whole: f64) -> String {
    if whole <= 0.0 { "n/a".into() } else { format!("{:.0}%", 100.0 * part / whole) }
}

/// A count with thousands separators: 75700 → "75,700".
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Milliseconds with two decimals.
pub fn ms(duration: std::time::Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

/// The `p` quantile (0..=1) of sorted durations.
pub fn quantile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(75700.4), "75,700");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000_000.0), "1,000,000");
    }
}
