//! # vault-cli
//!
//! The `vault` command: a thin consumer of `vault_core::remote` (the sync client) and
//! `vault_core::Vault`. See docs/cli.md for every command, the state directory, the `--json`
//! shapes and the exit codes.
//!
//! The library half exists so that the tests can build the binary with the test-only fast
//! KDF (feature `danger-insecure-test-kdf`); it is not a stable API.

#![forbid(unsafe_code)]

mod args;
mod commands;
mod context;
pub mod error;
mod mfa;
mod offline;
mod output;
mod secrets;
mod state;
mod sync;
mod transfer;

use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;

/// Runs the command line and returns the exit code (docs/cli.md "Exit codes").
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { error::USAGE } else { 0 });
        }
    };
    let out = output::Output::new(cli.global.json, cli.global.quiet);
    match commands::run(cli, &out) {
        Ok(()) => ExitCode::from(error::OK),
        Err(e) => {
            out.error(&e);
            ExitCode::from(e.code)
        }
    }
}
