//! The `vault` command (docs/cli.md). Everything is in the library half, `vault_cli`.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    vault_cli::main()
}
