//! Connecting, resuming the saved session and opening the vault.

use std::time::{SystemTime, UNIX_EPOCH};

use rand_core::OsRng;
use vault_core::remote::{Server, ServerOptions, Session};
use vault_core::{LocalState, Vault};
use vault_keyring::{
    KdfParams, KdfPolicy, Keyring, KeyringId, Password, PasswordKeys, SealedKeyring,
};

use crate::args::ServerArgs;
use crate::error::{CliError, Result, AUTH};
use crate::output::Output;
use crate::secrets::{Passwords, Which};
use crate::state::{Config, SavedSession, StateDir};

/// The environment variable that turns on the test-only fast KDF (only in a build with the
/// feature `danger-insecure-test-kdf`).
pub const FAST_KDF_ENV: &str = "VAULT_INSECURE_FAST_KDF";

/// Whether this run uses the test-only fast KDF: the build has the feature and the
/// environment asks for it. A normal build ignores the variable (with a warning).
pub fn fast_kdf(out: &Output) -> bool {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let asked = std::env::var(FAST_KDF_ENV).is_ok_and(|v| v == "1");
    if asked && !cfg!(feature = "danger-insecure-test-kdf") {
        WARNED.call_once(|| {
            out.warn(&format!(
                "{FAST_KDF_ENV} is ignored: this build has no test KDF (it is for tests only)"
            ));
        });
    }
    asked && cfg!(feature = "danger-insecure-test-kdf")
}

/// The KDF policy keyrings are opened under.
pub fn kdf_policy(out: &Output) -> KdfPolicy {
    // Called in every build, so that a normal build warns about the variable.
    let fast = fast_kdf(out);
    #[cfg(feature = "danger-insecure-test-kdf")]
    if fast {
        return vault_keyring::danger::insecure_test_policy(1_000);
    }
    let _ = fast;
    KdfPolicy::default()
}

/// KDF parameters for a new sealing of the keyring: calibrated to this machine (never below
/// the 600,000-iteration floor), or the 10-iteration test parameters.
pub fn new_kdf(out: &Output) -> Result<KdfParams> {
    let fast = fast_kdf(out);
    #[cfg(feature = "danger-insecure-test-kdf")]
    if fast {
        out.warn("INSECURE test KDF (10 iterations): for tests only");
        return Ok(vault_keyring::danger::insecure_test_params(&mut OsRng, 10));
    }
    let _ = (fast, OsRng);
    Ok(KdfParams::calibrate(vault_keyring::DEFAULT_TARGET))
}

/// Merges the server options given now into the configuration.
pub fn apply_server_args(config: &mut Config, args: &ServerArgs) -> Result<()> {
    if let Some(s) = &args.server {
        config.server = Some(s.trim_end_matches('/').to_owned());
    }
    if let Some(p) = &args.pin_sha256 {
        let p: String = p
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        config.pin_sha256 = Some(p);
    }
    if let Some(c) = &args.ca_file {
        let abs = std::path::absolute(c)
            .map_err(|e| CliError::io("cannot resolve the CA file's path", &e))?;
        config.ca_file = Some(abs);
    }
    Ok(())
}

/// The server of the configuration.
pub fn server(config: &Config, out: &Output) -> Result<Server> {
    let url = config.server.as_deref().ok_or_else(|| {
        CliError::general("no server configured").hint("run `vault login --server URL`")
    })?;
    let mut options = ServerOptions::new().kdf_policy(kdf_policy(out));
    if let Some(ca) = &config.ca_file {
        let pem = std::fs::read(ca).map_err(|e| CliError::io("cannot read the CA file", &e))?;
        options = options.trust_ca_pem(&pem)?;
    }
    if let Some(pin) = &config.pin_sha256 {
        options = options.pin_sha256_hex(pin)?;
    }
    Ok(Server::connect(url, options)?)
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A user id from 32 hex digits.
pub fn parse_user_id(text: &str) -> Option<KeyringId> {
    vault_core::VaultId::from_hex(text).map(|v| KeyringId::from_bytes(*v.as_bytes()))
}

/// The logged-in state: server, session, config.
pub struct LoggedIn {
    /// The state directory.
    pub dir: StateDir,
    /// Its configuration.
    pub config: Config,
    /// The server.
    pub server: Server,
    /// The resumed session.
    pub session: Session,
}

impl LoggedIn {
    /// Resumes the saved session.
    pub fn resume(dir: StateDir, out: &Output) -> Result<Self> {
        let config = dir.config()?;
        let saved = dir
            .session()?
            .ok_or_else(|| CliError::new(AUTH, "not logged in").hint("run `vault login`"))?;
        let server = server(&config, out)?;
        let user = parse_user_id(&saved.user_id).ok_or_else(|| {
            CliError::general("session.json is not valid").hint("run `vault login`")
        })?;
        if saved.expires <= now() {
            return Err(CliError::new(AUTH, "the session has ended: log in again")
                .hint("run `vault login`"));
        }
        let session = server.resume(&saved.token, user, saved.expires)?;
        Ok(Self {
            dir,
            config,
            server,
            session,
        })
    }

    /// Asks for the password and opens the vault: the saved sealed keyring is opened here
    /// (no network); if it does not open, the server's copy is tried (the password may have
    /// been changed on another device) and saved.
    pub fn open_vault(self, passwords: &Passwords, out: &Output) -> Result<Open> {
        let password = passwords.get(Which::Current, "Vault password: ")?;
        let keyring = self.unlock(&password, out)?;
        let state =
            LocalState::open(self.dir.local_state_dir(&keyring.id().to_string())).map_err(|e| {
                CliError::from(e)
                    .hint("is another `vault` command running with this state directory?")
            })?;
        let store =
            crate::offline::open_cache(&self.dir, &keyring.id().to_string(), self.session.store())?;
        let vault = Vault::open(store, keyring, state);
        Ok(Open { ctx: self, vault })
    }

    /// Unlocks the keyring with `password`.
    pub fn unlock(&self, password: &Password, out: &Output) -> Result<Keyring> {
        let policy = kdf_policy(out);
        if let Some(bytes) = self.dir.sealed_keyring()? {
            if let Ok(sealed) = SealedKeyring::from_bytes(&bytes) {
                if sealed.keyring_id() == self.session.user() {
                    let keys =
                        PasswordKeys::derive_with_policy(password, &sealed.kdf_params(), &policy)?;
                    if let Ok(k) = sealed.unlock(&keys) {
                        return Ok(k);
                    }
                }
            }
        }
        let (_, sealed) = self.session.download_keyring()?;
        let keyring = self.session.unlock_keyring(password)?;
        self.dir.save_sealed_keyring(&sealed.to_bytes())?;
        Ok(keyring)
    }

    /// Saves a new session after a login.
    pub fn save_session(dir: &StateDir, session: &Session) -> Result<()> {
        dir.save_session(&SavedSession {
            token: session.expose_token().to_owned(),
            user_id: session.user().to_string(),
            expires: session.expires(),
        })
    }
}

/// A logged-in, unlocked vault.
pub struct Open {
    /// The session and configuration.
    pub ctx: LoggedIn,
    /// The vault on the server, through this device's local cache.
    pub vault: Vault<crate::offline::CliStore>,
}
