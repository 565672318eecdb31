//! Failed-login backoff per account and per client address (docs/spec/login.md §8).
//!
//! Each account name and each client address has a failure count. The first
//! `free_failures` failures cost nothing; every further one locks the key for
//! `base × 2^k` seconds (k = 0, 1, 2, …), capped at `max_secs`. A login is refused, before
//! any verification runs, while either its account or its address is locked. A success
//! clears the account's count; the address's count is cleared only by time, so a client that
//! owns one account cannot reset its address between guesses at others. A count is forgotten
//! after `forget_after_secs` without failures.
//!
//! Memory is bounded: each table holds at most `max_entries` keys. When a new key arrives at
//! a full table the least valuable entry goes: first those never locked, oldest failure
//! first; then those whose lock ends soonest. A spray of fresh addresses or names therefore
//! evicts itself and does not free an account or address that is locked.
//!
//! Unknown account names are counted like existing ones, so the backoff tells nothing about
//! which accounts exist (login.md §7). Time is a parameter (`now`, Unix seconds).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};

use sha2::{Digest, Sha256};

/// Prefix of the hashed account names the account table is keyed by.
const ACCOUNT_KEY_LABEL: &[u8] = b"vault/v1/server/backoff-account\0";

/// A login refused by the backoff: the client may try again after this many seconds (the
/// value of an HTTP `Retry-After` header). Always at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many failed logins; retry after {0} s")]
pub struct RetryAfter(pub u64);

/// The schedule of one table (accounts or addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Failures that cost nothing.
    pub free_failures: u32,
    /// The first lock-out, in seconds; each further failure doubles it.
    pub base_secs: u64,
    /// The longest lock-out, in seconds.
    pub max_secs: u64,
    /// A count is forgotten after this many seconds without a failure (and once its lock
    /// has ended).
    pub forget_after_secs: u64,
}

impl Schedule {
    /// Accounts: 5 free failures, then 1 s, 2 s, 4 s, … up to 15 minutes; forgotten after a
    /// day without failures.
    pub const ACCOUNT: Schedule = Schedule {
        free_failures: 5,
        base_secs: 1,
        max_secs: 15 * 60,
        forget_after_secs: 24 * 60 * 60,
    };

    /// Addresses: 20 free failures (many users may share one address behind NAT), then as
    /// for accounts.
    pub const ADDRESS: Schedule = Schedule {
        free_failures: 20,
        base_secs: 1,
        max_secs: 15 * 60,
        forget_after_secs: 24 * 60 * 60,
    };

    /// The lock-out after the `failures`-th failure in a row: 0 while
    /// `failures <= free_failures`, then `min(base × 2^(failures − free − 1), max)`.
    pub fn lockout_secs(&self, failures: u32) -> u64 {
        let Some(extra) = failures.checked_sub(self.free_failures.saturating_add(1)) else {
            return 0;
        };
        let doubled = if extra >= 63 {
            u64::MAX
        } else {
            self.base_secs.saturating_mul(1u64 << extra)
        };
        doubled.min(self.max_secs)
    }
}

/// The parameters of a [`Backoff`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The schedule per account name.
    pub account: Schedule,
    /// The schedule per client address (IPv4 address, or IPv6 /64 prefix).
    pub address: Schedule,
    /// The most keys each of the two tables holds (at least 1). A key costs about 300 bytes
    /// (measured), so the default 50,000 is some 30 MB for both tables at worst.
    pub max_entries: usize,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            account: Schedule::ACCOUNT,
            address: Schedule::ADDRESS,
            max_entries: 50_000,
        }
    }
}

/// The failed-login backoff of a server: two bounded tables behind one mutex, shared by
/// reference between request handlers.
///
/// The login flow is: [`check`](Backoff::check) (refuse with `Retry-After` if locked), then
/// verify, then [`record_failure`](Backoff::record_failure) or
/// [`record_success`](Backoff::record_success).
#[derive(Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    tables: Mutex<Tables>,
}

#[derive(Debug)]
struct Tables {
    accounts: Table<[u8; 32]>,
    addresses: Table<IpAddr>,
    /// Tie-breaker of the eviction order, increasing with every update.
    seq: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(BackoffPolicy::default())
    }
}

impl Backoff {
    /// An empty backoff with `policy`.
    pub fn new(policy: BackoffPolicy) -> Self {
        let cap = policy.max_entries.max(1);
        Self {
            policy,
            tables: Mutex::new(Tables {
                accounts: Table::new(cap),
                addresses: Table::new(cap),
                seq: 0,
            }),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Whether a login for `account` (the login name as the server normalises it, whether
    /// or not such an account exists) from `addr` may be verified at `now`. If the account
    /// or the address is locked, the error says for how long (the longer of the two).
    pub fn check(&self, account: &[u8], addr: IpAddr, now: u64) -> Result<(), RetryAfter> {
        let tables = self.lock();
        let wait = tables
            .accounts
            .remaining(&account_key(account), now, &self.policy.account)
            .max(
                tables
                    .addresses
                    .remaining(&address_key(addr), now, &self.policy.address),
            );
        if wait == 0 {
            Ok(())
        } else {
            Err(RetryAfter(wait))
        }
    }

    /// Counts a failed login (wrong secret or unknown account) for both `account` and
    /// `addr`.
    pub fn record_failure(&self, account: &[u8], addr: IpAddr, now: u64) {
        let mut tables = self.lock();
        let tables = &mut *tables;
        tables.seq += 1;
        tables
            .accounts
            .fail(account_key(account), now, &self.policy.account, tables.seq);
        tables.seq += 1;
        tables
            .addresses
            .fail(address_key(addr), now, &self.policy.address, tables.seq);
    }

    /// Counts a successful login: clears `account`'s count. The client address keeps its
    /// count until time forgets it (see the module documentation), so it is not a
    /// parameter.
    pub fn record_success(&self, account: &[u8]) {
        self.lock().accounts.remove(&account_key(account));
    }

    /// Drops every entry that is forgotten at `now` (no lock, no failure within
    /// `forget_after_secs`); how many. Entries are also dropped when full tables evict and
    /// are ignored once forgotten, so sweeping only returns memory early.
    pub fn sweep(&self, now: u64) -> usize {
        let mut tables = self.lock();
        tables.accounts.sweep(now, &self.policy.account)
            + tables.addresses.sweep(now, &self.policy.address)
    }

    /// How many account names are tracked.
    pub fn tracked_accounts(&self) -> usize {
        self.lock().accounts.len()
    }

    /// How many addresses are tracked.
    pub fn tracked_addresses(&self) -> usize {
        self.lock().addresses.len()
    }

    // Each operation leaves both tables consistent before anything can panic, so a
    // poisoned lock is still safe to use.
    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The account table's key: a fixed-size hash of the name, so a long name costs no more
/// memory than a short one.
fn account_key(account: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ACCOUNT_KEY_LABEL);
    h.update(account);
    h.finalize().into()
}

/// The address table's key: an IPv4 address as is (also when it arrives IPv4-mapped in
/// IPv6), an IPv6 address reduced to its /64 prefix, the smallest block one subscriber
/// usually holds — otherwise one client could rotate through 2^64 addresses.
pub fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// The eviction order: never-locked entries (`locked_until` 0) first, oldest failure first;
/// then by the end of the lock. `seq` makes keys unique.
type Order = (u64, u64, u64);

#[derive(Debug)]
struct Entry {
    failures: u32,
    last_failure: u64,
    locked_until: u64,
    order: Order,
}

impl Entry {
    fn forgotten(&self, now: u64, schedule: &Schedule) -> bool {
        now >= self.locked_until
            && now >= self.last_failure.saturating_add(schedule.forget_after_secs)
    }
}

#[derive(Debug)]
struct Table<K> {
    entries: HashMap<K, Entry>,
    order: BTreeMap<Order, K>,
    cap: usize,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(cap: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            cap,
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn remaining(&self, key: &K, now: u64, schedule: &Schedule) -> u64 {
        match self.entries.get(key) {
            Some(entry) if !entry.forgotten(now, schedule) => {
                entry.locked_until.saturating_sub(now)
            }
            _ => 0,
        }
    }

    fn fail(&mut self, key: K, now: u64, schedule: &Schedule, seq: u64) {
        let previous = self.remove(&key);
        let failures = match previous {
            Some(ref entry) if !entry.forgotten(now, schedule) => entry.failures.saturating_add(1),
            _ => 1,
        };
        let lockout = schedule.lockout_secs(failures);
        let mut locked_until = if lockout == 0 {
            0
        } else {
            now.saturating_add(lockout)
        };
        if let Some(entry) = previous {
            if !entry.forgotten(now, schedule) {
                locked_until = locked_until.max(entry.locked_until);
            }
        }
        while self.entries.len() >= self.cap {
            let Some((_, victim)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&victim);
        }
        let order = (locked_until, now, seq);
        self.order.insert(order, key.clone());
        self.entries.insert(
            key,
            Entry {
                failures,
                last_failure: now,
                locked_until,
                order,
            },
        );
    }

    fn remove(&mut self, key: &K) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.order.remove(&entry.order);
        Some(entry)
    }

    fn sweep(&mut self, now: u64, schedule: &Schedule) -> usize {
        let gone: Vec<K> = self
            .entries
            .iter()
            .filter(|(_, e)| e.forgotten(now, schedule))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &gone {
            self.remove(key);
        }
        gone.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn ipv6_is_keyed_by_its_64_prefix_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_eq!(address_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
    }

    #[test]
    fn lockout_schedule() {
        let s = Schedule::ACCOUNT;
        let got: Vec<u64> = (0..=20).map(|n| s.lockout_secs(n)).collect();
        assert_eq!(
            got,
            [0, 0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900, 900, 900]
        );
        assert_eq!(s.lockout_secs(u32::MAX), 900);
        let huge = Schedule {
            base_secs: u64::MAX / 2,
            max_secs: u64::MAX,
            ..s
        };
        assert_eq!(huge.lockout_secs(8), u64::MAX);
    }

    #[test]
    fn eviction_order_prefers_unlocked_then_oldest() {
        let s = Schedule::ACCOUNT;
        let mut t = Table::new(3);
        for _ in 0..6 {
            t.fail(1u32, 100, &s, 1);
        }
        t.fail(2, 50, &s, 2);
        t.fail(3, 60, &s, 3);
        t.fail(4, 70, &s, 4); // evicts 2: never locked, oldest failure
        assert_eq!(t.len(), 3);
        assert!(!t.entries.contains_key(&2));
        assert!(t.entries.contains_key(&1));
        assert_eq!(t.order.len(), t.entries.len());
    }
}
