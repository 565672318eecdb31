//! The command line (clap derive). docs/cli.md describes the same in prose.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const LONG_ABOUT: &str = "\
vault: the command-line client of the end-to-end encrypted vault.

Files are encrypted on this device before they are sent; the server only stores opaque
pages, sealed keyrings, public keys and key envelopes. The password never leaves the
device and is never accepted on the command line: it is asked for without echo on a
terminal, or read from --password-stdin (one line) or the VAULT_PASSWORD variable.

State lives in --dir (env VAULT_DIR; default $XDG_CONFIG_HOME/vault or ~/.config/vault):
config.json, session.json (the session token, mode 0600), keyring.sealed (the keyring,
encrypted under the password), state/ (pinned identities, manifest high-water marks).

Exit codes:
   0  ok
   1  general failure at run time
   2  usage error (bad arguments)
   3  authentication failed (wrong name or password; session ended: log in again)
   4  second factor required or wrong
   5  server unreachable, timed out, or TLS failed
   6  integrity: data from the server failed its checks (tampering)
   7  key changed: a fingerprint does not match, or the server certificate pin
   8  not found (or not shared with you)
   9  conflict (another device was first; a name is taken)
  10  storage quota used up

See docs/cli.md for every command and the --json output shapes.";

/// The `vault` command.
#[derive(Parser, Debug)]
#[command(name = "vault", version, about = "The end-to-end encrypted vault's command-line client", long_about = LONG_ABOUT)]
pub struct Cli {
    /// Options of every command.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options of every command.
#[derive(Args, Debug)]
pub struct Global {
    /// The state directory.
    #[arg(long, global = true, env = "VAULT_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print one JSON object on stdout instead of text (see docs/cli.md).
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars and no informational text on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Read the password from the first line of standard input (for scripts). Commands
    /// that need two passwords read two lines (current, then new).
    #[arg(long, global = true)]
    pub password_stdin: bool,
}

/// A second factor, when the server asks for one.
#[derive(Args, Debug, Default, Clone)]
pub struct FactorArgs {
    /// A 6-digit code of an authenticator app (TOTP).
    #[arg(long, value_name = "CODE", conflicts_with_all = ["hotp", "backup_code"])]
    pub totp: Option<String>,
    /// A 6-digit HOTP code.
    #[arg(long, value_name = "CODE", conflicts_with = "backup_code")]
    pub hotp: Option<String>,
    /// A backup code (XXXX-XXXX-XXXX-XXXX).
    #[arg(long, value_name = "CODE")]
    pub backup_code: Option<String>,
}

/// Where the server is and how to trust it.
#[derive(Args, Debug, Default)]
pub struct ServerArgs {
    /// The server URL (https://, or http:// to localhost only). Saved in config.json.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Pin the SHA-256 fingerprint of the server's certificate (64 hex digits, as
    /// `vault-server gen-cert` prints it). Saved in config.json.
    #[arg(long, value_name = "HEX")]
    pub pin_sha256: Option<String>,
    /// Trust only the CA certificates in this PEM file. Saved in config.json.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Confirming someone's identity fingerprint.
#[derive(Args, Debug, Default)]
pub struct ConfirmArgs {
    /// Accept without asking, only if --fingerprint matches the identity the server gives.
    #[arg(long, requires = "fingerprint")]
    pub yes: bool,
    /// The fingerprint you compared with the other person (64 hex digits; spaces allowed).
    /// A different one is refused (exit 7) and nothing is shared.
    #[arg(long, value_name = "HEX")]
    pub fingerprint: Option<String>,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an account on a server, then log in. Prints the recovery code once.
    Register {
        /// The login name.
        #[arg(long, short)]
        user: String,
        /// Server and trust.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Log in and keep the session (and the sealed keyring) in the state directory.
    Login {
        /// The login name (default: the saved one).
        #[arg(long, short)]
        user: Option<String>,
        /// Server and trust.
        #[command(flatten)]
        server: ServerArgs,
        /// A second factor.
        #[command(flatten)]
        factor: FactorArgs,
    },
    /// End the session on the server and wipe the token file.
    Logout {
        /// End every session of the account, on every device.
        #[arg(long)]
        all: bool,
    },
    /// Show the server, the user, the session and the local state.
    Status,
    /// Store files and directories (recursively) in a collection.
    Put {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The collection.
        #[arg(long, short, default_value = "default")]
        collection: String,
        /// Prefix every object name with this (e.g. `photos/`).
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Fetch an object (or every object with --all).
    Get {
        /// The object's name.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Fetch every object of the collection into the directory given by -o.
        #[arg(long, requires = "output")]
        all: bool,
        /// Output file (`-` for stdout), or the directory with --all. Default: the
        /// object's last name component in the current directory.
        #[arg(long, short, value_name = "PATH")]
        output: Option<PathBuf>,
        /// The collection.
        #[arg(long, short, default_value = "default")]
        collection: String,
        /// The owner of a shared collection (login name or user id).
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// List the objects of a collection, or every collection with --collections.
    Ls {
        /// The collection.
        #[arg(long, short, default_value = "default")]
        collection: String,
        /// The owner of a shared collection (login name or user id).
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
        /// List the collections instead (own and shared with you).
        #[arg(long, conflicts_with_all = ["collection", "owner"])]
        collections: bool,
    },
    /// Delete an object.
    Rm {
        /// The object's name.
        name: String,
        /// The collection.
        #[arg(long, short, default_value = "default")]
        collection: String,
    },
    /// Show your identity fingerprint, or another user's as the server publishes it.
    Fingerprint {
        /// A login name or user id (default: you).
        user: Option<String>,
    },
    /// Share a collection with a user, after checking their fingerprint.
    Share {
        /// The collection (one of yours).
        collection: String,
        /// The user's login name or user id.
        user: String,
        /// Fingerprint confirmation.
        #[command(flatten)]
        confirm: ConfirmArgs,
    },
    /// Stop sharing a collection with a user (its key is rotated: what you write from now
    /// on is unreadable to them).
    Unshare {
        /// The collection (one of yours).
        collection: String,
        /// The user's login name or user id.
        user: String,
    },
    /// Pin a user's identity after checking the fingerprint (to read what they share).
    Trust {
        /// The user's login name or user id.
        user: String,
        /// Fingerprint confirmation.
        #[command(flatten)]
        confirm: ConfirmArgs,
        /// Replace the pinned identity of a user whose key changed, with the one the server
        /// offers now, if it matches --fingerprint (compare it with them first).
        #[arg(long, requires = "fingerprint")]
        accept_change: bool,
    },
    /// Refresh every collection you own or that is shared with you; print what changed.
    Sync,
    /// Change the password (the keyring is re-sealed on this device).
    Passwd {
        /// A second factor, if the account has MFA on.
        #[command(flatten)]
        factor: FactorArgs,
    },
    /// Recover the account with the recovery code after the password was lost.
    Recover {
        /// The login name.
        #[arg(long, short)]
        user: String,
        /// Server and trust.
        #[command(flatten)]
        server: ServerArgs,
        /// A second factor, if the account has MFA on.
        #[command(flatten)]
        factor: FactorArgs,
    },
    /// Security groups.
    #[command(subcommand)]
    Groups(GroupCommand),
    /// Multi-factor authentication: enrol an authenticator, backup codes, turn it off.
    #[command(subcommand)]
    Mfa(MfaCommand),
}

/// `vault groups …`.
#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Create a group with you as its admin; prints its id.
    Create,
    /// Add a member (fingerprint checked as for `vault share`).
    Add {
        /// The group id.
        group: String,
        /// The user's login name or user id.
        user: String,
        /// Make the member an admin.
        #[arg(long)]
        admin: bool,
        /// Fingerprint confirmation.
        #[command(flatten)]
        confirm: ConfirmArgs,
    },
    /// Remove a member (the group key is rotated).
    Remove {
        /// The group id.
        group: String,
        /// The user's login name or user id.
        user: String,
    },
    /// List your groups, or the members of one.
    Ls {
        /// A group id.
        group: Option<String>,
    },
    /// Share a collection with a group.
    Share {
        /// The collection (one of yours).
        collection: String,
        /// The group id.
        group: String,
    },
}

/// The kind of one-time-password factor to enrol.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OtpKindArg {
    /// Time-based codes (authenticator apps).
    #[default]
    Totp,
    /// Counter-based codes.
    Hotp,
}

/// `vault mfa …`.
#[derive(Subcommand, Debug)]
pub enum MfaCommand {
    /// Show the account's MFA settings (factors, backup codes left, trusted devices).
    Status,
    /// Start enrolling an authenticator: prints its secret and otpauth:// URI once.
    Enable {
        /// The kind of factor.
        #[arg(long, value_enum, default_value_t = OtpKindArg::Totp)]
        kind: OtpKindArg,
        /// A second factor, if MFA is already on (to add or replace a factor).
        #[command(flatten)]
        factor: FactorArgs,
    },
    /// Confirm the enrolment with the first code the authenticator shows; prints the
    /// backup codes once.
    Confirm {
        /// The code the authenticator shows now.
        code: String,
    },
    /// Replace the backup codes with ten new ones (printed once).
    BackupCodes {
        /// A second factor (needed).
        #[command(flatten)]
        factor: FactorArgs,
    },
    /// Turn MFA off (factors, backup codes and trusted devices are removed).
    Disable {
        /// A second factor (needed).
        #[command(flatten)]
        factor: FactorArgs,
    },
}
