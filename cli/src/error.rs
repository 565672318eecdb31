//! The command's errors and exit codes (docs/cli.md "Exit codes"). Every message is one line
//! made here or from the `Display` of `RemoteError` / `vault_core::Error`, which carry neither
//! a secret nor the server's own text.

use vault_core::remote::RemoteError;

/// Success.
pub const OK: u8 = 0;
/// A general failure at run time (bad input, local files, anything not listed below).
pub const GENERAL: u8 = 1;
/// A usage error found by the argument parser (clap exits with it itself).
pub const USAGE: u8 = 2;
/// Authentication failed: wrong name or password, or the session ended.
pub const AUTH: u8 = 3;
/// The account needs a second factor, or the one given was wrong.
pub const MFA: u8 = 4;
/// The server cannot be reached, did not answer in time, or TLS failed.
pub const UNREACHABLE: u8 = 5;
/// Integrity: data from the server (or the local state) failed its checks.
pub const INTEGRITY: u8 = 6;
/// A key changed: a fingerprint that does not match, or the server's certificate pin.
pub const KEY_CHANGED: u8 = 7;
/// Not found (or not shared with this user).
pub const NOT_FOUND: u8 = 8;
/// Conflict: another device changed it first, or the name is taken.
pub const CONFLICT: u8 = 9;
/// The account's storage quota is used up.
pub const QUOTA: u8 = 10;

/// An error of the command: what to print (one line), a hint, and the exit code.
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub code: u8,
    /// One line.
    pub message: String,
    /// What to do about it, if there is something.
    pub hint: Option<String>,
}

impl CliError {
    /// An error with `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// A general error (exit 1).
    pub fn general(message: impl Into<String>) -> Self {
        Self::new(GENERAL, message)
    }

    /// With a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The same error with a hint, unless it has one.
    pub fn or_hint(mut self, hint: impl Into<String>) -> Self {
        if self.hint.is_none() {
            self.hint = Some(hint.into());
        }
        self
    }

    /// A local file failed (`what` names it; the OS error has no secret).
    pub fn io(what: &str, e: &std::io::Error) -> Self {
        Self::general(format!("{what}: {e}"))
    }

    /// The stable name of the exit code, for `--json`.
    pub fn kind(&self) -> &'static str {
        match self.code {
            AUTH => "authentication_failed",
            MFA => "mfa",
            UNREACHABLE => "unreachable",
            INTEGRITY => "integrity",
            KEY_CHANGED => "key_changed",
            NOT_FOUND => "not_found",
            CONFLICT => "conflict",
            QUOTA => "quota",
            USAGE => "usage",
            _ => "error",
        }
    }
}

impl From<RemoteError> for CliError {
    fn from(e: RemoteError) -> Self {
        let message = e.to_string();
        let (code, hint) = match &e {
            RemoteError::AuthenticationFailed => (AUTH, Some("check the name and the password")),
            RemoteError::SessionEnded => (AUTH, Some("run `vault login`")),
            RemoteError::MfaRequired => (
                MFA,
                Some("log in again with --totp CODE, --hotp CODE or --backup-code CODE"),
            ),
            RemoteError::MfaFailed => (MFA, Some("use a fresh code (each code works once)")),
            RemoteError::ElevationRequired => (
                MFA,
                Some("give a second factor with --totp/--hotp/--backup-code"),
            ),
            RemoteError::Unreachable => (
                UNREACHABLE,
                Some("check the server URL (`vault status`) and the network"),
            ),
            RemoteError::TimedOut => (UNREACHABLE, Some("try again later")),
            RemoteError::Tls => (
                UNREACHABLE,
                Some("give the server's CA with --ca-file or its certificate pin with --pin-sha256 at login"),
            ),
            RemoteError::PinMismatch => (
                KEY_CHANGED,
                Some("do not continue unless the server's operator confirms a new certificate"),
            ),
            RemoteError::Integrity => (
                INTEGRITY,
                Some("nothing of the altered data was used; report this to the server's operator"),
            ),
            RemoteError::NotFound => (NOT_FOUND, None),
            RemoteError::Conflict { .. } => (CONFLICT, Some("run the command again")),
            RemoteError::Exists => (CONFLICT, Some("choose another name")),
            RemoteError::QuotaExceeded => (QUOTA, Some("delete objects or ask for more space")),
            RemoteError::AddressNotAllowed => (AUTH, None),
            RemoteError::RateLimited { .. } => (GENERAL, Some("wait and try again")),
            RemoteError::PlainHttpRefused | RemoteError::InvalidUrl => {
                (GENERAL, Some("use an https:// URL (http:// only to localhost)"))
            }
            RemoteError::Vault(inner) => return vault_error(inner, message),
            _ => (GENERAL, None),
        };
        let mut out = CliError::new(code, message);
        out.hint = hint.map(str::to_owned);
        out
    }
}

fn vault_error(e: &vault_core::Error, message: String) -> CliError {
    use vault_core::Error as E;
    let (code, hint) = match e {
        E::Integrity => (
            INTEGRITY,
            Some("nothing of the altered data was used; report this to the server's operator"),
        ),
        E::KeyChanged { .. } => (
            KEY_CHANGED,
            Some("compare fingerprints with the other person before going on"),
        ),
        E::UnsupportedFormat => (
            GENERAL,
            Some("this version of vault does not read that format: update vault (or the server altered the data)"),
        ),
        E::NotFound => (NOT_FOUND, None),
        E::UnknownIdentity(_) => (NOT_FOUND, Some("run `vault trust USER` first")),
        E::NoAccess => (NOT_FOUND, Some("it is not shared with you (any more)")),
        E::Conflict => (CONFLICT, Some("run the command again")),
        _ => (GENERAL, None),
    };
    let mut out = CliError::new(code, message);
    out.hint = hint.map(str::to_owned);
    out
}

impl From<vault_core::Error> for CliError {
    fn from(e: vault_core::Error) -> Self {
        // A RemoteStore failure comes back as the RemoteError it was.
        RemoteError::from(e).into()
    }
}

impl From<vault_keyring::Error> for CliError {
    fn from(e: vault_keyring::Error) -> Self {
        match e {
            vault_keyring::Error::AuthenticationFailed => {
                CliError::new(AUTH, "wrong password (or the saved keyring was altered)")
                    .hint("check the password")
            }
            other => CliError::general(format!("keyring: {other}")),
        }
    }
}

/// The result of a command.
pub type Result<T> = std::result::Result<T, CliError>;
