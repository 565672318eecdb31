//! Passwords and second factors: never from argv (passwords), never printed, never in an
//! error. Sources in order: `--password-stdin` (one line per password), the environment
//! (`VAULT_PASSWORD`, `VAULT_NEW_PASSWORD`), a prompt without echo on the terminal.

use std::cell::RefCell;
use std::io::{BufRead, IsTerminal};

use vault_core::remote::SecondFactor;
use vault_keyring::Password;
use zeroize::Zeroizing;

use crate::args::FactorArgs;
use crate::error::{CliError, Result};

/// Reads passwords for one command.
pub struct Passwords {
    stdin: bool,
    /// Lines read from stdin so far (a command reads at most two).
    read: RefCell<u32>,
}

/// Which password is asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The current password (`VAULT_PASSWORD`).
    Current,
    /// A new password (`VAULT_NEW_PASSWORD`, or `VAULT_PASSWORD` for registration).
    New,
}

impl Passwords {
    /// With `--password-stdin` or not.
    pub fn new(stdin: bool) -> Self {
        Self {
            stdin,
            read: RefCell::new(0),
        }
    }

    /// One password.
    pub fn get(&self, which: Which, prompt: &str) -> Result<Password> {
        if self.stdin {
            let mut line = Zeroizing::new(String::new());
            let n = std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| CliError::io("cannot read the password from stdin", &e))?;
            *self.read.borrow_mut() += 1;
            if n == 0 {
                return Err(CliError::general("no password on stdin")
                    .hint("write the password as one line on standard input"));
            }
            let trimmed = line.trim_end_matches(['\n', '\r']);
            return nonempty(Password::new(trimmed.to_owned()), trimmed.is_empty());
        }
        let var = match which {
            Which::Current => "VAULT_PASSWORD",
            Which::New => "VAULT_NEW_PASSWORD",
        };
        if let Some(v) = std::env::var_os(var) {
            let v = Zeroizing::new(
                v.into_string()
                    .map_err(|_| CliError::general(format!("{var} is not valid UTF-8")))?,
            );
            return nonempty(Password::new(v.to_string()), v.is_empty());
        }
        if !std::io::stderr().is_terminal() && !std::io::stdin().is_terminal() {
            return Err(CliError::general("no terminal to ask for the password")
                .hint(format!("use --password-stdin or set {var}")));
        }
        let text = Zeroizing::new(
            rpassword::prompt_password(prompt)
                .map_err(|e| CliError::io("cannot read the password", &e))?,
        );
        nonempty(Password::new(text.to_string()), text.is_empty())
    }

    /// A secret that is not a password (the recovery code): the next line of stdin with
    /// `--password-stdin`, else the variable `var`, else a prompt without echo.
    pub fn secret(&self, var: &str, prompt: &str) -> Result<Zeroizing<String>> {
        if self.stdin {
            let mut line = Zeroizing::new(String::new());
            let n = std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| CliError::io("cannot read standard input", &e))?;
            *self.read.borrow_mut() += 1;
            if n == 0 {
                return Err(CliError::general("nothing on stdin")
                    .hint("write each secret as one line on standard input"));
            }
            return Ok(Zeroizing::new(line.trim().to_owned()));
        }
        if let Some(v) = std::env::var_os(var) {
            let v = Zeroizing::new(
                v.into_string()
                    .map_err(|_| CliError::general(format!("{var} is not valid UTF-8")))?,
            );
            return Ok(Zeroizing::new(v.trim().to_owned()));
        }
        if !std::io::stderr().is_terminal() && !std::io::stdin().is_terminal() {
            return Err(CliError::general("no terminal to ask for it")
                .hint(format!("use --password-stdin or set {var}")));
        }
        let text = Zeroizing::new(
            rpassword::prompt_password(prompt)
                .map_err(|e| CliError::io("cannot read from the terminal", &e))?,
        );
        Ok(Zeroizing::new(text.trim().to_owned()))
    }

    /// A new password: asked twice on a terminal.
    pub fn new_password(&self, which: Which, prompt: &str) -> Result<Password> {
        let interactive = !self.stdin
            && std::env::var_os(match which {
                Which::Current => "VAULT_PASSWORD",
                Which::New => "VAULT_NEW_PASSWORD",
            })
            .is_none();
        if !interactive {
            return self.get(which, prompt);
        }
        if !std::io::stderr().is_terminal() && !std::io::stdin().is_terminal() {
            return Err(
                CliError::general("no terminal to ask for the new password").hint(format!(
                    "use --password-stdin or set {}",
                    match which {
                        Which::Current => "VAULT_PASSWORD",
                        Which::New => "VAULT_NEW_PASSWORD",
                    }
                )),
            );
        }
        let first = Zeroizing::new(
            rpassword::prompt_password(prompt)
                .map_err(|e| CliError::io("cannot read the password", &e))?,
        );
        let again = Zeroizing::new(
            rpassword::prompt_password("Repeat it: ")
                .map_err(|e| CliError::io("cannot read the password", &e))?,
        );
        if *first != *again {
            return Err(CliError::general("the two passwords differ"));
        }
        nonempty(Password::new(first.to_string()), first.is_empty())
    }
}

fn nonempty(p: Password, empty: bool) -> Result<Password> {
    if empty {
        Err(CliError::general("the password is empty"))
    } else {
        Ok(p)
    }
}

/// The second factor given on the command line, if any.
pub fn factor(args: &FactorArgs) -> Option<SecondFactor> {
    if let Some(c) = &args.totp {
        Some(SecondFactor::totp(c.trim()))
    } else if let Some(c) = &args.hotp {
        Some(SecondFactor::hotp(c.trim()))
    } else {
        args.backup_code
            .as_ref()
            .map(|c| SecondFactor::backup_code(c.trim()))
    }
}

/// Asks a yes/no question on the terminal (`/dev/tty`, so that stdin may carry a password);
/// anything but `y`/`yes` is no.
pub fn confirm(question: &str) -> Result<bool> {
    let tty = std::fs::File::open("/dev/tty").map_err(|_| {
        CliError::general("no terminal to ask for confirmation")
            .hint("compare the fingerprint, then pass --yes --fingerprint HEX")
    })?;
    eprint!("{question} [y/N] ");
    let mut line = String::new();
    std::io::BufReader::new(tty)
        .read_line(&mut line)
        .map_err(|e| CliError::io("cannot read the answer", &e))?;
    let a = line.trim().to_ascii_lowercase();
    Ok(a == "y" || a == "yes")
}
