//! Acknowledged writes survive a crash: a child process writes objects into a sled vault
//! and prints each acknowledgement; the parent kills it with SIGKILL mid-way, reopens the
//! store and the local state, and reads back every acknowledged object bit for bit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vault_core::{LocalState, SledStore, Vault};
use vault_keyring::{Keyring, KeyringOptions};

const ENV: &str = "VAULT_CRASH_WRITER_DIR";

fn keyring() -> Keyring {
    Keyring::generate(
        &mut ChaCha20Rng::from_seed([77; 32]),
        &KeyringOptions::new(),
    )
    .unwrap()
}

fn object(i: u64) -> Vec<u8> {
    let len = (i * 7919 % 200_000) as usize + (i as usize % 3);
    (0..len).map(|j| (j as u64 ^ i) as u8).collect()
}

fn open(dir: &Path) -> Vault<SledStore> {
    let store = SledStore::open(dir.join("store")).unwrap();
    let state = LocalState::open(dir.join("state")).unwrap();
    Vault::open(store, keyring(), state)
}

/// The child: writes until killed. Does nothing unless started by the parent.
#[test]
fn crash_writer_child() {
    let Some(dir) = std::env::var_os(ENV) else {
        return;
    };
    let vault = open(Path::new(&dir));
    let mut c = vault.collection("crash").unwrap();
    for i in 0.. {
        c.put(&format!("object-{i}"), &object(i)).unwrap();
        println!("ACK {i}");
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(i) = line.strip_prefix("ACK ") {
            acked.push(i.parse::<u64>().unwrap());
            if acked.len() == 25 {
                child.kill().unwrap(); // SIGKILL: no destructor, no flush.
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(
        acked.len(),
        25,
        "the writer stopped before 25 acknowledgements"
    );

    let vault = open(dir.path());
    let c = vault.collection("crash").unwrap();
    for i in &acked {
        assert_eq!(
            c.get(&format!("object-{i}")).unwrap(),
            object(*i),
            "object {i}"
        );
    }
    // At most the one write in flight at the kill may also have landed.
    assert!(c.list().len() <= acked.len() + 1);
}
