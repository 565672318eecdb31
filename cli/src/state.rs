//! The state directory (docs/cli.md "State directory"): `config.json`, `session.json` (the
//! bearer token, mode 0600), `keyring.sealed` (the password-sealed keyring), `state/<user
//! id>/` (the sled `LocalState`: pins and manifest high-water marks) and `sync.json` (what
//! the last `vault sync` saw).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{CliError, Result};

/// `config.json`: nothing secret.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Config {
    /// The server URL.
    pub server: Option<String>,
    /// The login name.
    pub user: Option<String>,
    /// The user id (32 hex digits).
    pub user_id: Option<String>,
    /// The user's identity fingerprint (64 hex digits), saved at login.
    pub fingerprint: Option<String>,
    /// The SHA-256 pin of the server's certificate (64 hex digits).
    pub pin_sha256: Option<String>,
    /// A PEM file of trust anchors for the server.
    pub ca_file: Option<PathBuf>,
}

/// `session.json` (mode 0600): the bearer token and when it ends.
#[derive(Serialize, Deserialize)]
pub struct SavedSession {
    /// The token. A bearer secret.
    pub token: String,
    /// The user id (32 hex digits).
    pub user_id: String,
    /// Unix seconds.
    pub expires: u64,
}

impl Drop for SavedSession {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.token);
    }
}

/// The state directory.
pub struct StateDir {
    /// Its path.
    pub path: PathBuf,
}

const CONFIG: &str = "config.json";
const SESSION: &str = "session.json";
const KEYRING: &str = "keyring.sealed";
const SYNC: &str = "sync.json";

impl StateDir {
    /// The directory: `--dir`/`VAULT_DIR`, else `$XDG_CONFIG_HOME/vault`, else
    /// `$HOME/.config/vault`.
    pub fn locate(dir: Option<PathBuf>) -> Result<Self> {
        let path = match dir {
            Some(d) => d,
            None => match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
                Some(x) => PathBuf::from(x).join("vault"),
                None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
                    Some(h) => PathBuf::from(h).join(".config").join("vault"),
                    None => {
                        return Err(CliError::general("no state directory")
                            .hint("give --dir DIR or set VAULT_DIR"))
                    }
                },
            },
        };
        Ok(Self { path })
    }

    /// Creates the directory (mode 0700) if needed.
    pub fn create(&self) -> Result<()> {
        if !self.path.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.path)
                .map_err(|e| CliError::io("cannot create the state directory", &e))?;
        }
        Ok(())
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// `config.json`, or the defaults if there is none.
    pub fn config(&self) -> Result<Config> {
        match fs::read(self.file(CONFIG)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|_| {
                CliError::general("config.json is not valid").hint("fix or remove it")
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(CliError::io("cannot read config.json", &e)),
        }
    }

    /// Writes `config.json`.
    pub fn save_config(&self, config: &Config) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(config)
            .map_err(|_| CliError::general("cannot encode the configuration"))?;
        self.write_private(CONFIG, &bytes)
    }

    /// Writes a file with mode 0600, replacing it atomically (a temporary file, then a
    /// rename), so a reader never sees half of it.
    pub fn write_private(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.create()?;
        let tmp = self.file(&format!(".{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            // The mode of an existing file is not changed by `mode`: set it.
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, self.file(name))
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            CliError::io(&format!("cannot write {name}"), &e)
        })
    }

    /// The saved session, if any.
    pub fn session(&self) -> Result<Option<SavedSession>> {
        match fs::read(self.file(SESSION)) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                serde_json::from_slice(&bytes).map(Some).map_err(|_| {
                    CliError::general("session.json is not valid").hint("run `vault login`")
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CliError::io("cannot read session.json", &e)),
        }
    }

    /// Saves the session (mode 0600).
    pub fn save_session(&self, session: &SavedSession) -> Result<()> {
        let bytes = Zeroizing::new(
            serde_json::to_vec(session)
                .map_err(|_| CliError::general("cannot encode the session"))?,
        );
        self.write_private(SESSION, &bytes)
    }

    /// Overwrites the session file with zeros and removes it.
    pub fn wipe_session(&self) -> Result<()> {
        let path = self.file(SESSION);
        if let Ok(meta) = fs::metadata(&path) {
            if let Ok(mut f) = OpenOptions::new().write(true).open(&path) {
                let zeros = vec![0u8; usize::try_from(meta.len()).unwrap_or(0)];
                let _ = f.write_all(&zeros);
                let _ = f.sync_all();
            }
            fs::remove_file(&path).map_err(|e| CliError::io("cannot remove session.json", &e))?;
        }
        Ok(())
    }

    /// The sealed keyring's bytes, if saved.
    pub fn sealed_keyring(&self) -> Result<Option<Vec<u8>>> {
        match fs::read(self.file(KEYRING)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CliError::io("cannot read keyring.sealed", &e)),
        }
    }

    /// Saves the sealed keyring (mode 0600; it is encrypted under the password).
    pub fn save_sealed_keyring(&self, bytes: &[u8]) -> Result<()> {
        self.write_private(KEYRING, bytes)
    }

    /// Removes the sealed keyring (another user logged in).
    pub fn remove_sealed_keyring(&self) -> Result<()> {
        match fs::remove_file(self.file(KEYRING)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CliError::io("cannot remove keyring.sealed", &e)),
        }
    }

    /// The sled directory of `user_id`'s `LocalState`.
    pub fn local_state_dir(&self, user_id: &str) -> PathBuf {
        self.path.join("state").join(user_id)
    }

    /// What the last sync saw.
    pub fn sync_snapshot(&self) -> Result<crate::sync::Snapshot> {
        match fs::read(self.file(SYNC)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|_| {
                CliError::general("sync.json is not valid")
                    .hint("remove it; the next sync lists everything as new")
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(CliError::io("cannot read sync.json", &e)),
        }
    }

    /// Saves what this sync saw.
    pub fn save_sync_snapshot(&self, snapshot: &crate::sync::Snapshot) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(snapshot)
            .map_err(|_| CliError::general("cannot encode sync.json"))?;
        self.write_private(SYNC, &bytes)
    }
}
