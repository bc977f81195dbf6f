//! The `keyward` binary: configuration, `serve`, and the admin commands.
//!
//! Invariant: the only `main`, and the only reader of environment variables and files outside the
//! database. `cli` holds the server and operator commands (which open the database); `remote`
//! the administrator's client commands (which only talk to a server's API).
#![forbid(unsafe_code)]

mod cli;
mod log_writer;
mod remote;

use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: an API read spent about 14% of its time allocating and
/// freeing (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cli::main()
}
