//! The commands (docs/cli.md): each one a function from its arguments to one result, printed
//! as text or as one JSON object.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use vault_core::remote::{Login, Server, Session};
use vault_core::{GroupId, LocalState, Role, Store, Vault};
use vault_keyring::{
    Fingerprint, IdentityBundle, KeyringId, KeyringOptions, Password, RecoveryCode,
};

use crate::args::{Cli, Command, ConfirmArgs, FactorArgs, GroupCommand, ServerArgs};
use crate::context::{self, LoggedIn, Open};
use crate::error::{CliError, Result, AUTH, KEY_CHANGED, NOT_FOUND};
use crate::output::Output;
use crate::secrets::{self, Passwords, Which};
use crate::state::{Config, StateDir};
use crate::sync;
use crate::transfer;

/// Runs the command.
pub fn run(cli: Cli, out: &Output) -> Result<()> {
    let dir = StateDir::locate(cli.global.dir.clone())?;
    let passwords = Passwords::new(cli.global.password_stdin);
    let p = &passwords;
    // Commands that work offline: `ls` and `get` on the cache, `put` and `rm` queued.
    let read_only = matches!(
        cli.command,
        Command::Ls { .. } | Command::Get { .. } | Command::Put { .. } | Command::Rm { .. }
    );
    let result = match cli.command {
        Command::Register { user, server } => register(dir, &user, &server, p, out),
        Command::Login {
            user,
            server,
            factor,
        } => login(dir, user, &server, &factor, p, out),
        Command::Logout { all } => logout(dir, all, out),
        Command::Status => status(dir, out),
        Command::Put {
            paths,
            collection,
            prefix,
        } => put(dir, &paths, &collection, &prefix, p, out),
        Command::Get {
            name,
            all,
            output,
            collection,
            owner,
            force,
        } => get(
            dir,
            name.as_deref(),
            all,
            output,
            &collection,
            owner.as_deref(),
            force,
            p,
            out,
        ),
        Command::Ls {
            collection,
            owner,
            collections,
        } => ls(dir, &collection, owner.as_deref(), collections, p, out),
        Command::Rm { name, collection } => rm(dir, &name, &collection, p, out),
        Command::Fingerprint { user } => fingerprint(dir, user.as_deref(), out),
        Command::Share {
            collection,
            user,
            confirm,
        } => share(dir, &collection, &user, &confirm, p, out),
        Command::Unshare { collection, user } => unshare(dir, &collection, &user, p, out),
        Command::Trust {
            user,
            confirm,
            accept_change,
        } => trust(dir, &user, &confirm, accept_change, p, out),
        Command::Sync => sync_cmd(dir, p, out),
        Command::Passwd { factor } => passwd(dir, &factor, p, out),
        Command::Recover {
            user,
            server,
            factor,
        } => recover(dir, &user, &server, &factor, p, out),
        Command::Groups(g) => groups(dir, g, p, out),
        Command::Mfa(m) => crate::mfa::run(dir, m, p, out),
    };
    result.map_err(|e| crate::offline::explain(e, read_only))
}

/// A fingerprint as 64 hex digits without spaces (for `--json` and `--fingerprint`).
fn fp_hex(fp: &Fingerprint) -> String {
    hex::encode(fp.as_bytes())
}

/// A fingerprint typed by a person: hex digits, spaces and colons ignored, any case.
fn normalize_fp(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Everything to remember after a login (or a registration, or a recovery).
fn logged_in(
    dir: &StateDir,
    config: &mut Config,
    user: &str,
    session: &Session,
    fingerprint: &Fingerprint,
) -> Result<()> {
    let user_id = session.user().to_string();
    if config.user_id.as_deref().is_some_and(|old| old != user_id) {
        // Another account in this directory: its sealed keyring and sync view go.
        dir.remove_sealed_keyring()?;
        dir.save_sync_snapshot(&sync::Snapshot::default())?;
    }
    LoggedIn::save_session(dir, session)?;
    let (_, sealed) = session.download_keyring()?;
    dir.save_sealed_keyring(&sealed.to_bytes())?;
    config.user = Some(user.to_owned());
    config.user_id = Some(user_id);
    config.fingerprint = Some(fp_hex(fingerprint));
    dir.save_config(config)
}

/// The identity fingerprint of `keyring`, computed here (never the server's word).
fn own_fingerprint(
    dir: &StateDir,
    session: &Session,
    keyring: vault_keyring::Keyring,
) -> Result<Fingerprint> {
    let state = LocalState::open(dir.local_state_dir(&keyring.id().to_string())).map_err(|e| {
        CliError::from(e).hint("is another `vault` command running with this state directory?")
    })?;
    let vault = Vault::open(session.store(), keyring, state);
    Ok(vault.identity().fingerprint())
}

fn register(
    dir: StateDir,
    user: &str,
    server_args: &ServerArgs,
    passwords: &Passwords,
    out: &Output,
) -> Result<()> {
    dir.create()?;
    let mut config = dir.config()?;
    context::apply_server_args(&mut config, server_args)?;
    let server = context::server(&config, out)?;
    let password = passwords.new_password(Which::Current, "New vault password: ")?;
    let kdf = context::new_kdf(out)?;
    out.note("creating the keyring (RSA and P-256 keys) and registering…");
    let registration = server.register(user, &password, &kdf, &KeyringOptions::new())?;
    // From here on the account exists: whatever fails next, the recovery code is printed.
    let code = registration.recovery_code.expose_formatted();
    let user_id = registration.keyring.id().to_string();
    let fp = registration
        .keyring
        .identity_bundle(&mut rand_core::OsRng)
        .fingerprint();
    drop(registration.keyring);
    let login = (|| -> Result<()> {
        let (session, keyring) = server.login_and_unlock(user, &password, &Login::new())?;
        let _ = own_fingerprint(&dir, &session, keyring)?;
        logged_in(&dir, &mut config, user, &session, &fp)
    })();
    let logged = match login {
        Ok(()) => true,
        Err(e) => {
            out.warn(&format!(
                "registered, but the login that follows failed: {} (run `vault login`)",
                e.message
            ));
            config.user = Some(user.to_owned());
            config.user_id = Some(user_id.clone());
            config.fingerprint = Some(fp_hex(&fp));
            dir.save_config(&config)?;
            false
        }
    };
    out.done(
        json!({
            "user": user,
            "user_id": user_id,
            "fingerprint": fp_hex(&fp),
            "recovery_code": code.as_str(),
            "server": server.url(),
            "logged_in": logged,
        }),
        || {
            vec![
                format!("registered {user} (user id {user_id}) on {}", server.url()),
                format!("your fingerprint: {fp}"),
                String::new(),
                "RECOVERY CODE (shown once; write it down and keep it offline; it is the only way"
                    .to_owned(),
                "back in without the password):".to_owned(),
                format!("  {}", code.as_str()),
            ]
        },
    );
    Ok(())
}

fn login_options(factor: &FactorArgs) -> Login {
    match secrets::factor(factor) {
        Some(f) => Login::new().second_factor(f),
        None => Login::new(),
    }
}

fn login(
    dir: StateDir,
    user: Option<String>,
    server_args: &ServerArgs,
    factor: &FactorArgs,
    passwords: &Passwords,
    out: &Output,
) -> Result<()> {
    dir.create()?;
    let mut config = dir.config()?;
    context::apply_server_args(&mut config, server_args)?;
    let user = user
        .or_else(|| config.user.clone())
        .ok_or_else(|| CliError::general("no login name").hint("give it with --user NAME"))?;
    let server = context::server(&config, out)?;
    let password = passwords.get(Which::Current, &format!("Password for {user}: "))?;
    let (session, keyring) = server.login_and_unlock(&user, &password, &login_options(factor))?;
    let fp = own_fingerprint(&dir, &session, keyring)?;
    logged_in(&dir, &mut config, &user, &session, &fp)?;
    let left = session.backup_codes_left();
    if let Some(n) = left {
        out.warn(&format!("{n} backup code(s) left"));
    }
    out.done(
        json!({
            "user": user,
            "user_id": session.user().to_string(),
            "fingerprint": fp_hex(&fp),
            "expires": session.expires(),
            "backup_codes_left": left,
        }),
        || vec![format!("logged in as {user} on {}", server.url())],
    );
    Ok(())
}

fn logout(dir: StateDir, all: bool, out: &Output) -> Result<()> {
    if dir.session()?.is_none() {
        out.done(json!({ "logged_out": false }), || {
            vec!["not logged in".to_owned()]
        });
        return Ok(());
    }
    let ended = match LoggedIn::resume(
        StateDir {
            path: dir.path.clone(),
        },
        out,
    ) {
        Ok(ctx) if all => ctx.session.logout_everywhere().map_err(CliError::from),
        Ok(ctx) => ctx.session.logout().map_err(CliError::from),
        Err(e) => Err(e),
    };
    // The token is wiped here whatever the server said.
    dir.wipe_session()?;
    if let Err(e) = &ended {
        if e.code != AUTH {
            out.warn(&format!(
                "the session could not be ended on the server ({}); it was removed here",
                e.message
            ));
        }
    }
    out.done(json!({ "logged_out": true }), || {
        vec!["logged out".to_owned()]
    });
    Ok(())
}

fn status(dir: StateDir, out: &Output) -> Result<()> {
    let config = dir.config()?;
    let session = dir.session()?;
    let now = context::now();
    let (logged, expires) = match &session {
        Some(s) => (s.expires > now, Some(s.expires)),
        None => (false, None),
    };
    let path = dir.path.display().to_string();
    out.done(
        json!({
            "dir": path,
            "server": config.server,
            "user": config.user,
            "user_id": config.user_id,
            "fingerprint": config.fingerprint,
            "pin_sha256": config.pin_sha256,
            "ca_file": config.ca_file,
            "logged_in": logged,
            "expires": expires,
        }),
        || {
            let mut lines = vec![
                format!("state directory: {path}"),
                format!(
                    "server:          {}",
                    config.server.as_deref().unwrap_or("(none)")
                ),
                format!(
                    "user:            {}",
                    config.user.as_deref().unwrap_or("(none)")
                ),
            ];
            if let Some(id) = &config.user_id {
                lines.push(format!("user id:         {id}"));
            }
            if let Some(fp) = &config.fingerprint {
                lines.push(format!("fingerprint:     {fp}"));
            }
            lines.push(match (logged, expires) {
                (true, Some(e)) => format!(
                    "session:         active, ends in {} min",
                    e.saturating_sub(now) / 60
                ),
                (false, Some(_)) => "session:         ended (run `vault login`)".to_owned(),
                _ => "session:         none (run `vault login`)".to_owned(),
            });
            lines
        },
    );
    Ok(())
}

fn open(dir: StateDir, passwords: &Passwords, out: &Output) -> Result<Open> {
    LoggedIn::resume(dir, out)?.open_vault(passwords, out)
}

fn own_collection_exists(vault: &Vault<crate::offline::CliStore>, name: &str) -> Result<bool> {
    let id = vault.collection_id(name);
    Ok(vault
        .store()
        .get_manifest(&id)
        .map_err(vault_core::Error::from)?
        .is_some())
}

fn put(
    dir: StateDir,
    paths: &[PathBuf],
    collection: &str,
    prefix: &str,
    passwords: &Passwords,
    out: &Output,
) -> Result<()> {
    let files = transfer::walk(paths, prefix, out)?;
    if files.is_empty() {
        return Err(CliError::general("no files to store"));
    }
    let open = open(dir, passwords, out)?;
    let mut c = open.vault.collection(collection)?;
    transfer::put_all(&mut c, &files, out)?;
    let queued = c.queued();
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    let objects: Vec<Value> = files
        .iter()
        .map(|f| json!({ "name": f.name, "size": f.size }))
        .collect();
    out.done(
        json!({ "collection": collection, "objects": objects, "bytes": bytes, "queued": queued }),
        || {
            let mut lines = vec![format!(
                "stored {} file(s), {bytes} bytes, in {collection:?}",
                files.len()
            )];
            lines.extend(queued_note(queued));
            lines
        },
    );
    Ok(())
}

/// The note of a write kept on this device while the server is unreachable.
fn queued_note(queued: usize) -> Option<String> {
    (queued > 0).then(|| {
        format!(
            "the server is unreachable: kept on this device ({queued} change(s) queued); \
             `vault sync` sends them when it is back"
        )
    })
}

#[allow(clippy::too_many_arguments)]
fn get(
    dir: StateDir,
    name: Option<&str>,
    all: bool,
    output: Option<PathBuf>,
    collection: &str,
    owner: Option<&str>,
    force: bool,
    passwords: &Passwords,
    out: &Output,
) -> Result<()> {
    let open = open(dir, passwords, out)?;
    let c = sync::open_for_read(
        &open.vault,
        &open.ctx.session,
        &open.ctx.dir,
        collection,
        owner,
    )?;
    crate::offline::warn_if_offline(&open, out);
    let mut got = Vec::new();
    if all {
        let target = output.ok_or_else(|| CliError::general("--all needs -o DIR"))?;
        let mut refused = 0usize;
        for l in c.list() {
            let Some(path) = transfer::safe_path(&target, &l.name) else {
                out.warn(&format!(
                    "skipped an object whose name cannot be a path under {}: {:?}",
                    target.display(),
                    l.name
                ));
                refused += 1;
                continue;
            };
            let n = transfer::get_one(&c, &l.name, &path, force, out)?;
            got.push((l.name, path, n));
        }
        if refused > 0 {
            return Err(CliError::general(format!(
                "{refused} object(s) not written: their names would leave {}",
                target.display()
            )));
        }
    } else {
        let name = name.ok_or_else(|| CliError::general("no object name"))?;
        let path = match output {
            Some(p) => p,
            None => transfer::default_output(name)?,
        };
        let n = transfer::get_one(&c, name, &path, force, out)?;
        got.push((name.to_owned(), path, n));
    }
    let objects: Vec<Value> = got
        .iter()
        .map(|(n, p, s)| json!({ "name": n, "path": p.display().to_string(), "size": s }))
        .collect();
    if !(out.json && got.len() == 1 && got[0].1 == Path::new("-")) {
        out.done(
            json!({ "collection": collection, "objects": objects }),
            || {
                got.iter()
                    .filter(|(_, p, _)| p != Path::new("-"))
                    .map(|(n, p, s)| format!("{n} -> {} ({s} bytes)", p.display()))
                    .collect()
            },
        );
    }
    Ok(())
}

fn ls(
    dir: StateDir,
    collection: &str,
    owner: Option<&str>,
    collections: bool,
    passwords: &Passwords,
    out: &Output,
) -> Result<()> {
    let open = open(dir, passwords, out)?;
    if collections {
        let (found, pending) = sync::collections(&open.vault)?;
        let list: Vec<Value> = found
            .iter()
            .map(|f| {
                json!({
                    "name": f.name,
                    "owner": f.collection.owner().to_string(),
                    "own": f.own,
                    "version": f.collection.manifest().version,
                    "objects": f.collection.list().len(),
                })
            })
            .collect();
        let pending: Vec<String> = pending.iter().map(|p| p.owner.to_string()).collect();
        out.done(json!({ "collections": list, "pending": pending }), || {
            let mut lines: Vec<String> = found
                .iter()
                .map(|f| {
                    let whose = if f.own {
                        "own".to_owned()
                    } else {
                        format!("shared by {}", f.collection.owner())
                    };
                    format!(
                        "{}\t{} object(s)\t{whose}",
                        f.name,
                        f.collection.list().len()
                    )
                })
                .collect();
            for p in &pending {
                lines.push(format!("(shares from {p} wait for `vault trust {p}`)"));
            }
            lines
        });
        return Ok(());
    }
    let c = sync::open_for_read(
        &open.vault,
        &open.ctx.session,
        &open.ctx.dir,
        collection,
        owner,
    )?;
    crate::offline::warn_if_offline(&open, out);
    let list = c.list();
    let objects: Vec<Value> = list
        .iter()
        .map(|l| json!({ "name": l.name, "size": l.size, "version": l.version }))
        .collect();
    out.done(
        json!({
            "collection": collection,
            "owner": c.owner().to_string(),
            "objects": objects,
        }),
        || {
            list.iter()
                .map(|l| format!("{:>12}  {}", l.size, l.name))
                .collect()
        },
    );
    Ok(())
}

fn rm(
    dir: StateDir,
    name: &str,
    collection: &str,
    passwords: &Passwords,
    out: &Output,
) -> Result<()> {
    let open = open(dir, passwords, out)?;
    if !own_collection_exists(&open.vault, collection)? {
        return Err(CliError::new(
            NOT_FOUND,
            format!("no collection {collection:?}"),
        ));
    }
    let mut c = open.vault.collection(collection)?;
    c.delete(name)?;
    let queued = c.queued();
    out.done(
        json!({ "collection": collection, "removed": name, "queued": queued }),
        || {
            let mut lines = vec![format!("removed {name} from {collection:?}")];
            lines.extend(queued_note(queued));
            lines
        },
    );
    Ok(())
}

fn fingerprint(dir: StateDir, user: Option<&str>, out: &Output) -> Result<()> {
    let config = dir.config()?;
    let own = config
        .fingerprint
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(Fingerprint::from_bytes);
    let Some(user) = user else {
        let fp = own.ok_or_else(|| {
            CliError::new(AUTH, "no identity in this state directory").hint("run `vault login`")
        })?;
        out.done(
            json!({
                "user": config.user,
                "user_id": config.user_id,
                "fingerprint": fp_hex(&fp),
                "safety_number": fp.safety_number(),
            }),
            || {
                vec![
                    format!("your fingerprint: {fp}"),
                    format!("safety number:    {}", fp.safety_number()),
                ]
            },
        );
        return Ok(());
    };
    let ctx = LoggedIn::resume(dir, out)?;
    let id = sync::resolve_user(&ctx.session, user)?;
    let bundle = ctx.session.identity(id)?;
    let fp = bundle.fingerprint();
    let pair = own.map(|o| Fingerprint::pair_safety_number(&o, &fp));
    out.done(
        json!({
            "user": user,
            "user_id": id.to_string(),
            "fingerprint": fp_hex(&fp),
            "safety_number": pair,
        }),
        || {
            let mut lines = vec![
                format!("{user} (user id {id}), as the server publishes it:"),
                format!("  fingerprint:   {fp}"),
            ];
            if let Some(p) = &pair {
                lines.push(format!("  safety number: {p}"));
            }
            lines.push("compare it with what they see on their own device".to_owned());
            lines
        },
    );
    Ok(())
}

/// Fetches `user`'s identity and makes sure it is the one the person at the keyboard
/// confirmed: already pinned (and unchanged), or `--fingerprint` matches, or the person
/// says yes after seeing it. Pins it. A changed key or a wrong fingerprint is exit 7 and
/// nothing is pinned.
fn confirmed_identity(
    open: &Open,
    user: &str,
    confirm: &ConfirmArgs,
    accept_change: bool,
    out: &Output,
) -> Result<(KeyringId, IdentityBundle)> {
    let id = sync::resolve_user(&open.ctx.session, user)?;
    if id == open.vault.keyring().id() {
        return Err(CliError::general("that is you"));
    }
    let bundle = open.ctx.session.identity(id)?;
    let fp = bundle.fingerprint();
    let pinned = open.vault.pinned_fingerprint(&id)?;
    let changed = pinned.as_ref().is_some_and(|p| *p != fp);
    if let Some(p) = &pinned {
        if *p != fp && !accept_change {
            return Err(CliError::new(
                KEY_CHANGED,
                format!("the identity key of {user} changed (pinned {p}, offered {fp})"),
            )
            .hint(format!(
                "compare fingerprints with {user} in person; nothing was shared (if they \
                 confirm the new key: `vault trust {user} --accept-change --fingerprint HEX`)"
            )));
        }
    }
    if let Some(given) = &confirm.fingerprint {
        if normalize_fp(given) != fp_hex(&fp) {
            return Err(CliError::new(
                KEY_CHANGED,
                format!("{user}'s fingerprint is not the one you gave (the server offers {fp})"),
            )
            .hint("do not go on unless they confirm this fingerprint; nothing was shared"));
        }
    } else if pinned.is_none() {
        if confirm.yes {
            return Err(CliError::general("--yes needs --fingerprint HEX"));
        }
        let me = open.vault.identity().fingerprint();
        if !out.quiet {
            eprintln!("{user} (user id {id}) is new on this device.");
            eprintln!("  fingerprint:   {fp}");
            eprintln!(
                "  safety number: {}",
                Fingerprint::pair_safety_number(&me, &fp)
            );
            eprintln!("Compare it with what {user} sees on their device (`vault fingerprint`).");
        }
        if !secrets::confirm("Is it the same?")? {
            return Err(CliError::new(
                KEY_CHANGED,
                "not confirmed; nothing was shared",
            ));
        }
    }
    if changed {
        // Only reached with --accept-change and a matching --fingerprint.
        open.vault.accept_key_change(&bundle, &fp)?;
        out.warn(&format!(
            "the pinned identity of {user} was replaced by {fp}"
        ));
    } else {
        open.vault.pin(&bundle)?;
    }
    Ok((id, bundle))
}

fn share(
    dir: StateDir,
    collection: &str,
    user: &str,
    confirm: &ConfirmArgs,
    passwords: &Passwords,
    out: &Output,
) -> Result<()> {
    let open = open(dir, passwords, out)?;
    if !own_collection_exists(&open.vault, collection)? {
        return Err(
            CliError::new(NOT_FOUND, format!("you have no collection {collection:?}"))
                .hint("store something in it first with `vault put`"),
        );
    }
    let (id, bundle) = confirmed_identity(&open, user, confirm, false, out)?;
    let mut c = open.vault.collection(collection)?;
    c.share_with(&bundle)?;
    let fp = bundle.fingerprint();
    out.done(
        json!({
            "collection": collection,
            "user": user,
            "user_id": id.to_string(),
            "fingerprint": fp_hex(&fp),
        }),
        || vec![format!("shared {collection:?} with {user} ({fp})")],
    );
    Ok(())
}

fn trust(
    dir: StateDir,
    user: &str,
    confirm: &ConfirmArgs,
    accept_change: bool,
    passwords: &Passwords,
    out: &Output,
) -> Result<()> {
    let open = open(dir, passwords, out)?;
    let (id, bundle) = confirmed_identity(&open, user, confirm, accept_change, out)?;
    let fp = bundle.fingerprint();
    out.done(
        json!({ "user": user, "user_id": id.to_string(), "fingerprint": fp_hex(&fp) }),
        || vec![format!("trusted {user} ({fp})")],
    );
    Ok(())
}

fn unshare(
    dir: StateDir,
    collection: &str,
    user: &str,
    passwords: &Passwords,
    out: &Output,
) -> Result<()> {
    let open = open(dir, passwords, out)?;
    if !own_collection_exists(&open.vault, collection)? {
        return Err(CliError::new(
            NOT_FOUND,
            format!("you have no collection {collection:?}"),
        ));
    }
    let id = sync::resolve_user(&open.ctx.session, user)?;
    let mut c = open.vault.collection(collection)?;
    c.unshare(&id).map_err(|e| match e {
        vault_core::Error::NotFound => CliError::new(
            NOT_FOUND,
            format!("{collection:?} is not shared with {user}"),
        ),
        e => e.into(),
    })?;
    out.done(
        json!({ "collection": collection, "user": user, "user_id": id.to_string() }),
        || {
            vec![format!(
                "stopped sharing {collection:?} with {user}; its key was rotated"
            )]
        },
    );
    Ok(())
}

fn sync_cmd(dir: StateDir, passwords: &Passwords, out: &Output) -> Result<()> {
    let open = open(dir, passwords, out)?;
    crate::offline::sync_cmd(&open, out)
}

fn passwd(dir: StateDir, factor: &FactorArgs, passwords: &Passwords, out: &Output) -> Result<()> {
    let ctx = LoggedIn::resume(dir, out)?;
    if let Some(f) = secrets::factor(factor) {
        ctx.session.elevate(&f)?;
    }
    let current = passwords.get(Which::Current, "Current password: ")?;
    // Checked here first, so that a wrong password is told before a new one is asked.
    let _ = ctx.unlock(&current, out)?;
    let new = passwords.new_password(Which::New, "New password: ")?;
    let kdf = context::new_kdf(out)?;
    ctx.session.change_password(&current, &new, &kdf)?;
    // Every session ended with the change: log in again with the new password.
    let LoggedIn {
        dir,
        mut config,
        server,
        ..
    } = ctx;
    dir.wipe_session()?;
    let relogged = relogin(&dir, &mut config, &server, &new, out);
    out.done(json!({ "changed": true, "logged_in": relogged }), || {
        let mut lines = vec!["password changed; every other session was ended".to_owned()];
        if !relogged {
            lines.push("log in again with `vault login`".to_owned());
        }
        lines
    });
    Ok(())
}

/// Logs in again after the server ended the sessions; `false` if it did not work (MFA).
fn relogin(
    dir: &StateDir,
    config: &mut Config,
    server: &Server,
    password: &Password,
    out: &Output,
) -> bool {
    let Some(user) = config.user.clone() else {
        return false;
    };
    let attempt = (|| -> Result<()> {
        let (session, keyring) = server.login_and_unlock(&user, password, &Login::new())?;
        let fp = own_fingerprint(dir, &session, keyring)?;
        logged_in(dir, config, &user, &session, &fp)
    })();
    match attempt {
        Ok(()) => true,
        Err(e) => {
            out.note(&format!("could not log in again: {}", e.message));
            false
        }
    }
}

fn recover(
    dir: StateDir,
    user: &str,
    server_args: &ServerArgs,
    factor: &FactorArgs,
    passwords: &Passwords,
    out: &Output,
) -> Result<()> {
    dir.create()?;
    let mut config = dir.config()?;
    context::apply_server_args(&mut config, server_args)?;
    let server = context::server(&config, out)?;
    let text = passwords.secret("VAULT_RECOVERY_CODE", "Recovery code: ")?;
    let code = RecoveryCode::parse(&text).map_err(|_| {
        CliError::new(AUTH, "that is not a valid recovery code")
            .hint("it has 56 characters in groups of 4; check each group")
    })?;
    drop(text);
    let new = passwords.new_password(Which::New, "New password: ")?;
    let kdf = context::new_kdf(out)?;
    let factor = secrets::factor(factor);
    let registration = server.recover(user, &code, &new, &kdf, factor.as_ref())?;
    let new_code = registration.recovery_code.expose_formatted();
    drop(registration.keyring);
    dir.wipe_session()?;
    // The previous sealed keyring here is sealed under the lost password.
    dir.remove_sealed_keyring()?;
    if config.user.as_deref() != Some(user) {
        config.user = Some(user.to_owned());
        config.user_id = None;
        config.fingerprint = None;
    }
    dir.save_config(&config)?;
    let relogged = relogin(&dir, &mut config, &server, &new, out);
    out.done(
        json!({
            "user": user,
            "recovery_code": new_code.as_str(),
            "logged_in": relogged,
        }),
        || {
            let mut lines = vec![
                format!("recovered {user}: the new password is set, every old session ended"),
                String::new(),
                "NEW RECOVERY CODE (the old one no longer works; write this one down, keep it offline):".to_owned(),
                format!("  {}", new_code.as_str()),
            ];
            if !relogged {
                lines.push("log in with `vault login`".to_owned());
            }
            lines
        },
    );
    Ok(())
}

fn parse_group(text: &str) -> Result<GroupId> {
    GroupId::from_hex(text.trim()).ok_or_else(|| {
        CliError::general(format!("{text:?} is not a group id"))
            .hint("a group id has 32 hex digits; `vault groups ls` lists yours")
    })
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Admin => "admin",
        Role::Member => "member",
    }
}

fn groups(dir: StateDir, cmd: GroupCommand, passwords: &Passwords, out: &Output) -> Result<()> {
    let open = open(dir, passwords, out)?;
    match cmd {
        GroupCommand::Create => {
            let g = open.vault.create_group()?;
            let id = g.id().to_string();
            out.done(json!({ "group": id }), || {
                vec![format!("created group {id}")]
            });
        }
        GroupCommand::Add {
            group,
            user,
            admin,
            confirm,
        } => {
            let gid = parse_group(&group)?;
            let (id, bundle) = confirmed_identity(&open, &user, &confirm, false, out)?;
            let mut g = open.vault.group(gid)?;
            let role = if admin { Role::Admin } else { Role::Member };
            g.add_member(&bundle, role)?;
            let fp = bundle.fingerprint();
            out.done(
                json!({
                    "group": gid.to_string(),
                    "user_id": id.to_string(),
                    "fingerprint": fp_hex(&fp),
                    "role": role_name(role),
                }),
                || vec![format!("added {user} to {gid} as {}", role_name(role))],
            );
        }
        GroupCommand::Remove { group, user } => {
            let gid = parse_group(&group)?;
            let id = sync::resolve_user(&open.ctx.session, &user)?;
            let mut g = open.vault.group(gid)?;
            g.remove_member(&id)?;
            out.done(
                json!({ "group": gid.to_string(), "removed": id.to_string(), "epoch": g.epoch() }),
                || {
                    vec![format!(
                        "removed {user} from {gid}; the group key was rotated"
                    )]
                },
            );
        }
        GroupCommand::Ls { group: None } => {
            let ids: Vec<String> = open
                .vault
                .groups()?
                .iter()
                .map(ToString::to_string)
                .collect();
            out.done(json!({ "groups": ids }), || {
                if ids.is_empty() {
                    vec!["no groups".to_owned()]
                } else {
                    ids.clone()
                }
            });
        }
        GroupCommand::Ls { group: Some(group) } => {
            let gid = parse_group(&group)?;
            let g = open.vault.group(gid)?;
            let members: Vec<Value> = g
                .roster()
                .members()
                .iter()
                .map(|m| {
                    json!({
                        "user_id": m.id.to_string(),
                        "fingerprint": fp_hex(&m.fingerprint),
                        "role": role_name(m.role),
                    })
                })
                .collect();
            out.done(
                json!({ "group": gid.to_string(), "epoch": g.epoch(), "members": members }),
                || {
                    g.roster()
                        .members()
                        .iter()
                        .map(|m| format!("{}  {:<6}  {}", m.id, role_name(m.role), m.fingerprint))
                        .collect()
                },
            );
        }
        GroupCommand::Share { collection, group } => {
            let gid = parse_group(&group)?;
            if !own_collection_exists(&open.vault, &collection)? {
                return Err(CliError::new(
                    NOT_FOUND,
                    format!("you have no collection {collection:?}"),
                ));
            }
            // The roster is verified before the collection key is handed to the group.
            let _ = open.vault.group(gid)?;
            let mut c = open.vault.collection(&collection)?;
            c.share_with_group(gid)?;
            out.done(
                json!({ "collection": collection, "group": gid.to_string() }),
                || vec![format!("shared {collection:?} with group {gid}")],
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::GENERAL;

    #[test]
    fn typed_fingerprints_are_normalized() {
        assert_eq!(normalize_fp("AB cd:EF 01"), "abcdef01");
    }

    #[test]
    fn unknown_exit_codes_are_general() {
        assert_eq!(CliError::general("x").code, GENERAL);
    }
}
