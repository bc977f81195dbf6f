//! The `keyward` binary: configuration, `serve`, and the admin commands.
//!
//! Invariant: the only `main`, and the only reader of environment variables and files outside the
//! database.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
