//! Output: text for people, or one JSON object per command (`--json`); errors as one line
//! plus a hint on stderr; progress bars on a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use crate::error::CliError;

/// Where and how to print.
pub struct Output {
    /// `--json`.
    pub json: bool,
    /// `--quiet`.
    pub quiet: bool,
}

impl Output {
    /// From the global flags.
    pub fn new(json: bool, quiet: bool) -> Self {
        Self { json, quiet }
    }

    /// The command's result: `value` with `"ok": true` in JSON mode, else `text()`'s lines.
    pub fn done(&self, value: Value, text: impl FnOnce() -> Vec<String>) {
        if self.json {
            let mut value = value;
            if let Value::Object(map) = &mut value {
                map.insert("ok".to_owned(), Value::Bool(true));
            }
            println!("{value}");
        } else {
            for line in text() {
                println!("{line}");
            }
        }
    }

    /// Information for a person, on stderr (not with --quiet or --json).
    pub fn note(&self, line: &str) {
        if !self.quiet && !self.json {
            eprintln!("{line}");
        }
    }

    /// A warning on stderr (always, but not with --quiet).
    pub fn warn(&self, line: &str) {
        if !self.quiet {
            eprintln!("warning: {line}");
        }
    }

    /// The error: one line and a hint on stderr; with --json also an object on stdout.
    pub fn error(&self, e: &CliError) {
        eprintln!("error: {}", e.message);
        if let Some(h) = &e.hint {
            eprintln!("hint: {h}");
        }
        if self.json {
            println!(
                "{}",
                json!({
                    "ok": false,
                    "exit_code": e.code,
                    "error": e.kind(),
                    "message": e.message,
                    "hint": e.hint,
                })
            );
        }
    }

    /// A progress bar of `total` bytes, shown only on a terminal, without --json/--quiet,
    /// and for at least 1 MiB.
    pub fn progress(&self, total: u64, label: &str) -> ProgressBar {
        if self.json || self.quiet || total < 1024 * 1024 || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(label.to_owned());
        bar
    }
}
