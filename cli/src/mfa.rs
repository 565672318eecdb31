//! `vault mfa …` (docs/cli.md): the account's second factor through
//! `vault_core::remote::Session` (docs/spec/mfa.md §4). `enable` prints the new secret and
//! its `otpauth://` URI once and `confirm` / `backup-codes` print the backup codes once:
//! the only places where the command shows a secret on purpose. No error carries one.

use serde_json::{json, Value};
use vault_core::remote::{BackupCodes, MfaStatus, OtpKind, Session};

use crate::args::{FactorArgs, MfaCommand, OtpKindArg};
use crate::context::LoggedIn;
use crate::error::{CliError, Result, MFA};
use crate::output::Output;
use crate::secrets::{self, Passwords, Which};
use crate::state::StateDir;

/// Runs `vault mfa …`.
pub fn run(dir: StateDir, cmd: MfaCommand, passwords: &Passwords, out: &Output) -> Result<()> {
    let ctx = LoggedIn::resume(dir, out)?;
    let session = &ctx.session;
    match cmd {
        MfaCommand::Status => status(session, out),
        MfaCommand::Enable { kind, factor } => enable(session, kind, &factor, passwords, out),
        MfaCommand::Confirm { code } => confirm(session, &code, out),
        MfaCommand::BackupCodes { factor } => backup_codes(session, &factor, out),
        MfaCommand::Disable { factor } => disable(session, &factor, passwords, out),
    }
}

fn kind_of(arg: OtpKindArg) -> OtpKind {
    match arg {
        OtpKindArg::Totp => OtpKind::Totp,
        OtpKindArg::Hotp => OtpKind::Hotp,
    }
}

/// The error of a sensitive command run without a second factor while MFA is on.
fn factor_needed(what: &str) -> CliError {
    CliError::new(MFA, format!("MFA is on: {what} needs a second factor"))
        .hint("give one with --totp CODE, --hotp CODE or --backup-code CODE")
}

/// Elevates the session with the factor given on the command line, if any (mfa.md §6).
/// Called after the password was read, so that a missing password uses up no code.
fn elevate(session: &Session, factor: &FactorArgs) -> Result<()> {
    if let Some(f) = secrets::factor(factor) {
        session.elevate(&f)?;
    }
    Ok(())
}

fn status(session: &Session, out: &Output) -> Result<()> {
    let s = session.mfa_status()?;
    let factors: Vec<Value> = s
        .factors
        .iter()
        .map(|f| json!({ "kind": f.kind.as_str(), "since": f.since }))
        .collect();
    let devices: Vec<Value> = s
        .devices
        .iter()
        .map(|d| {
            json!({
                "id": hex::encode(d.id),
                "label": d.label,
                "created": d.created,
                "expires": d.expires,
                "last_used": d.last_used,
            })
        })
        .collect();
    out.done(
        json!({
            "enabled": s.enabled,
            "factors": factors,
            "pending": s.pending.map(OtpKind::as_str),
            "backup_codes_left": s.backup_codes_left,
            "devices": devices,
            "allowlist": s.allowlist,
        }),
        || status_lines(&s),
    );
    Ok(())
}

fn status_lines(s: &MfaStatus) -> Vec<String> {
    let mut lines = vec![format!(
        "MFA:          {}",
        if s.enabled { "on" } else { "off" }
    )];
    for f in &s.factors {
        lines.push(format!(
            "factor:       {} (since {})",
            f.kind.as_str().to_ascii_uppercase(),
            f.since
        ));
    }
    if let Some(p) = s.pending {
        lines.push(format!(
            "pending:      {} (run `vault mfa confirm CODE`)",
            p.as_str().to_ascii_uppercase()
        ));
    }
    if s.enabled {
        lines.push(format!("backup codes: {} left", s.backup_codes_left));
    }
    for d in &s.devices {
        lines.push(format!(
            "device:       {} {:?} (trusted until {})",
            hex::encode(d.id),
            d.label,
            d.expires
        ));
    }
    if !s.allowlist.is_empty() {
        lines.push(format!("allow-list:   {}", s.allowlist.join(", ")));
    }
    lines
}

fn enable(
    session: &Session,
    kind: OtpKindArg,
    factor: &FactorArgs,
    passwords: &Passwords,
    out: &Output,
) -> Result<()> {
    let kind = kind_of(kind);
    let on = session.mfa_status()?.enabled;
    let given = secrets::factor(factor).is_some();
    if on && !given {
        return Err(factor_needed("adding or replacing a factor"));
    }
    if !on && given {
        out.warn("MFA is off: the second factor given is not needed and was not used");
    }
    let password = passwords.get(Which::Current, "Vault password: ")?;
    if on {
        elevate(session, factor)?;
    }
    let e = session.enroll_otp(kind, &password)?;
    let upper = kind.as_str().to_ascii_uppercase();
    out.done(
        json!({
            "kind": kind.as_str(),
            "secret": e.expose_secret(),
            "uri": e.expose_uri(),
            "algorithm": e.algorithm(),
            "digits": e.digits(),
            "period": e.period(),
            "confirm_before": e.confirm_before(),
        }),
        || {
            let params = match e.period() {
                Some(p) => format!("{}, {} digits, {p} s", e.algorithm(), e.digits()),
                None => format!("{}, {} digits, counter from 0", e.algorithm(), e.digits()),
            };
            vec![
                format!("{upper} secret (shown once; keep it secret; put it into your authenticator app):"),
                format!("  secret: {} ({params})", e.expose_secret()),
                format!("  uri:    {}", e.expose_uri()),
                String::new(),
                format!(
                    "Then run `vault mfa confirm CODE` with the code it shows, before {} (Unix time).",
                    e.confirm_before()
                ),
                "Until then the factor is not active.".to_owned(),
            ]
        },
    );
    Ok(())
}

fn code_lines(codes: &BackupCodes) -> Vec<String> {
    let mut lines = vec![
        "BACKUP CODES (shown once; each works once; keep them offline, apart from the device):"
            .to_owned(),
    ];
    lines.extend(codes.expose().map(|c| format!("  {c}")));
    lines
}

fn confirm(session: &Session, code: &str, out: &Output) -> Result<()> {
    let Some(kind) = session.mfa_status()?.pending else {
        return Err(CliError::general("no enrolment is waiting for a code")
            .hint("run `vault mfa enable` first (an enrolment waits 15 minutes)"));
    };
    let codes = session.confirm_otp(kind, code)?;
    let list: Vec<&str> = codes.expose().collect();
    out.done(
        json!({ "kind": kind.as_str(), "enabled": true, "backup_codes": list }),
        || {
            let mut lines = vec![
                format!(
                    "{} is on: logins and sensitive commands now need a code",
                    kind.as_str().to_ascii_uppercase()
                ),
                String::new(),
            ];
            if codes.is_empty() {
                lines.push("your existing backup codes stay valid".to_owned());
            } else {
                lines.extend(code_lines(&codes));
            }
            lines
        },
    );
    Ok(())
}

fn backup_codes(session: &Session, factor: &FactorArgs, out: &Output) -> Result<()> {
    if !session.mfa_status()?.enabled {
        return Err(CliError::general("MFA is off: there are no backup codes")
            .hint("run `vault mfa enable` first"));
    }
    if secrets::factor(factor).is_none() {
        return Err(factor_needed("new backup codes"));
    }
    elevate(session, factor)?;
    let codes = session.new_backup_codes()?;
    let list: Vec<&str> = codes.expose().collect();
    out.done(json!({ "backup_codes": list }), || {
        let mut lines = code_lines(&codes);
        lines.push("the old backup codes no longer work".to_owned());
        lines
    });
    Ok(())
}

fn disable(
    session: &Session,
    factor: &FactorArgs,
    passwords: &Passwords,
    out: &Output,
) -> Result<()> {
    let s = session.mfa_status()?;
    if !s.enabled && s.pending.is_none() {
        out.done(json!({ "disabled": false }), || {
            vec!["MFA is already off".to_owned()]
        });
        return Ok(());
    }
    if s.enabled && secrets::factor(factor).is_none() {
        return Err(factor_needed("turning it off"));
    }
    let password = passwords.get(Which::Current, "Vault password: ")?;
    if s.enabled {
        elevate(session, factor)?;
    }
    session.disable_mfa(&password)?;
    out.done(json!({ "disabled": true }), || {
        vec!["MFA is off: factors, backup codes and trusted devices were removed".to_owned()]
    });
    Ok(())
}
