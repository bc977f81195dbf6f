//! `authz`: the authorization decision against cedar-policy evaluating the same model. cedar-policy
//! lives in `bench/authz`, a workspace of its own so it never enters the product's build; this
//! runs it with cargo and reads its figures.

use std::process::Command;

use anyhow::{Context, bail};

use crate::report::Line;

pub fn run() -> anyhow::Result<Vec<Line>> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/authz/Cargo.toml");
    eprintln!("authz: cargo run --release --manifest-path bench/authz/Cargo.toml (the first build takes minutes)…");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["run", "--release", "--quiet", "--manifest-path", manifest])
        .output()
        .context("running cargo for bench/authz")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("bench/authz failed:\n{text}{}", String::from_utf8_lossy(&output.stderr));
    }
    let (keyward50, keyward99) = figures(&text, "keyward").context("no keyward line in bench/authz's output")?;
    let (cedar50, _) = figures(&text, "cedar-policy").context("no cedar-policy line in bench/authz's output")?;
    let speedup = cedar50 / keyward50.max(1e-9);
    Ok(vec![Line {
        workload: "authorization decision, 100,000 role assignments".into(),
        figure: format!("p50 {keyward50:.2} µs, p99 {keyward99:.2} µs"),
        limit: format!("cedar-policy on the same model: p50 {cedar50:.0} µs"),
        ratio: format!("{speedup:.0}× faster"),
        target: "p50 ≤ 1 µs and ≥ 100× faster".into(),
        met: Some(keyward50 <= 1.0 && speedup >= 100.0),
    }])
}

/// `keyward      p50    0.610 us   p99    1.100 us` → (0.61, 1.1).
fn figures(text: &str, engine: &str) -> Option<(f64, f64)> {
    let line = text.lines().find(|line| line.split_whitespace().next() == Some(engine))?;
    let numbers: Vec<f64> = line.split_whitespace().filter_map(|word| word.parse().ok()).collect();
    Some((*numbers.first()?, *numbers.get(1)?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_figures() {
        let text = "keyward      p50    0.610 us   p99    1.100 us\ncedar-policy p50  310.000 us   p99  357.000 us\n";
        assert_eq!(super::figures(text, "keyward"), Some((0.61, 1.1)));
        assert_eq!(super::figures(text, "cedar-policy"), Some((310.0, 357.0)));
    }
}
