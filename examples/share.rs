//! Sharing without trusting the server: Alice shares a collection with Bob, then with a
//! security group (Bob, Carol, Dave); everyone reads it; Alice removes Carol from the group,
//! writes again, and Carol cannot read what was written after her removal. One sled store
//! plays the server all four users sync through; each user has a device-local state.
//!
//! ```text
//! cargo run --release --locked -p vault-examples --example share
//! ```

use std::sync::Arc;

use rand_core::OsRng;
use vault_core::{Error, LocalState, RecordKind, Role, SledStore, Store, Vault};
use vault_keyring::{Keyring, KeyringOptions};

type Server = Arc<SledStore>;

fn user(
    name: &str,
    server: &Server,
    dir: &std::path::Path,
) -> Result<Vault<Server>, Box<dyn std::error::Error>> {
    let keyring = Keyring::generate(&mut OsRng, &KeyringOptions::new())?;
    let state = LocalState::open(dir.join(format!("{name}-device")))?;
    let vault = Vault::open(server.clone(), keyring, state);
    vault.publish_identity()?;
    println!(
        "{name:<6} keyring {}  fingerprint {}",
        vault.keyring().id(),
        vault.identity().fingerprint()
    );
    Ok(vault)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let server: Server = Arc::new(SledStore::open(dir.path().join("server"))?);
    println!("server store: {}", dir.path().join("server").display());
    let alice = user("alice", &server, dir.path())?;
    let bob = user("bob", &server, dir.path())?;
    let carol = user("carol", &server, dir.path())?;
    let dave = user("dave", &server, dir.path())?;

    // Identities come from the server's directory; each is pinned on first use. Alice and
    // Bob compare their safety number out of band (here: by printing it on both sides).
    let bob_id = alice.fetch_identity(bob.keyring().id())?;
    let alice_id = bob.fetch_identity(alice.keyring().id())?;
    let (a_says, b_says) = (alice.safety_number(&bob_id), bob.safety_number(&alice_id));
    println!("\nsafety number alice<->bob, as alice sees it: {a_says}");
    println!("safety number alice<->bob, as bob sees it:   {b_says}");
    assert_eq!(a_says, b_says, "a substituted key would show here");

    // 1. Alice shares "project" with Bob.
    let mut project = alice.collection("project")?;
    project.put("plan.md", b"# Plan\nShip the vault.\n")?;
    project.share_with(&bob_id)?;
    let owner = alice.id();
    let pid = project.id();
    let incoming = bob.incoming()?;
    println!("\nbob's incoming shares: {incoming:?}");
    let shared = bob.shared_collection(owner, pid)?;
    println!(
        "bob reads {:?} from alice's {:?}: {:?}",
        "plan.md",
        shared.manifest().name,
        String::from_utf8_lossy(&shared.get("plan.md")?)
    );

    // 2. Alice makes a group with Bob, Carol and Dave and hands "project" to it.
    carol.fetch_identity(alice.keyring().id())?;
    dave.fetch_identity(alice.keyring().id())?;
    let mut team = alice.create_group()?;
    for member in [&bob, &carol, &dave] {
        let identity = alice.fetch_identity(member.keyring().id())?;
        team.add_member(&identity, Role::Member)?;
    }
    let gid = team.id();
    project.share_with_group(gid)?;
    println!(
        "\ngroup {gid}: roster version {}, epoch {}, {} members",
        team.roster().version(),
        team.epoch(),
        team.roster().members().len()
    );
    for (name, member) in [("carol", &carol), ("dave", &dave)] {
        let g = member.group(gid)?;
        let c = member.shared_collection(owner, pid)?;
        println!(
            "{name} (group epoch {}) reads plan.md: {} bytes",
            g.epoch(),
            c.get("plan.md")?.len()
        );
    }

    // 3. Alice removes Carol: a new group epoch; the next write rotates the collection key.
    team.remove_member(&carol.keyring().id())?;
    project.put("after-carol.md", b"Carol left; this is not for her.\n")?;
    println!(
        "\ncarol removed: group epoch {}, collection key epoch {}",
        team.epoch(),
        project.manifest().key_epoch
    );
    let dave_view = dave.shared_collection(owner, pid)?;
    println!(
        "dave reads after-carol.md: {:?}",
        String::from_utf8_lossy(&dave_view.get("after-carol.md")?)
    );
    let _ = carol.group(gid)?; // Carol sees the new roster, without her
    match carol.shared_collection(owner, pid) {
        Err(Error::NoAccess) => {
            println!("carol cannot open the collection any more: no access (as intended)")
        }
        Err(e) => return Err(format!("carol: unexpected error {e}").into()),
        Ok(c) => match c.get("after-carol.md") {
            Err(_) => println!("carol cannot read after-carol.md (as intended)"),
            Ok(_) => return Err("carol read data written after her removal".into()),
        },
    }

    println!(
        "\nthe server holds {} collection(s), {} envelope(s), {} roster version(s), {} identities: \
         sealed or signed, nothing it could alter unnoticed",
        server.list_collections()?.len(),
        server.list_records(RecordKind::Envelope, &[])?.len(),
        server.list_records(RecordKind::Roster, &[])?.len(),
        server.list_records(RecordKind::Identity, &[])?.len(),
    );
    Ok(())
}
