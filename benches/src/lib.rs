//! Benchmarks live in `benches/*.rs`; see docs/PERFORMANCE.md. This library holds what
//! several of them share.

use vault_core::{
    CollectionId, MemoryStore, ObjectAddress, PageAddress, RecordKind, Store, StoreError, Swap,
};

/// Where a benchmark store keeps its pages (the bulk of the bytes).
pub trait PageSink: Send + Sync {
    /// Stores a sealed page.
    fn put(&self, address: &PageAddress, page: &[u8]) -> Result<(), StoreError>;
    /// Reads a sealed page.
    fn get(&self, address: &PageAddress) -> Result<Option<Vec<u8>>, StoreError>;
}

/// A store whose pages go to a [`PageSink`] and everything else (headers, keys, manifests,
/// records: small) to a [`MemoryStore`]: isolates the cost of the page path.
pub struct SplitStore<P: PageSink> {
    /// The pages.
    pub pages: P,
    /// Everything else.
    pub rest: MemoryStore,
}

impl<P: PageSink> SplitStore<P> {
    /// A store with `pages` and an empty memory store for the rest.
    pub fn new(pages: P) -> Self {
        Self {
            pages,
            rest: MemoryStore::new(),
        }
    }
}

/// Discards pages: what remains is the library's own work.
pub struct DiscardPages;

impl PageSink for DiscardPages {
    fn put(&self, _: &PageAddress, _: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }
    fn get(&self, _: &PageAddress) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
}

impl<P: PageSink> Store for SplitStore<P> {
    fn put_page(&self, a: &PageAddress, page: &[u8]) -> Result<(), StoreError> {
        self.pages.put(a, page)
    }
    fn get_page(&self, a: &PageAddress) -> Result<Option<Vec<u8>>, StoreError> {
        self.pages.get(a)
    }
    fn put_header(&self, a: &ObjectAddress, h: &[u8]) -> Result<(), StoreError> {
        self.rest.put_header(a, h)
    }
    fn get_header(&self, a: &ObjectAddress) -> Result<Option<Vec<u8>>, StoreError> {
        self.rest.get_header(a)
    }
    fn delete_object_version(&self, a: &ObjectAddress) -> Result<(), StoreError> {
        self.rest.delete_object_version(a)
    }
    fn put_collection_key(&self, c: &CollectionId, e: u32, w: &[u8]) -> Result<(), StoreError> {
        self.rest.put_collection_key(c, e, w)
    }
    fn get_collection_key(&self, c: &CollectionId, e: u32) -> Result<Option<Vec<u8>>, StoreError> {
        self.rest.get_collection_key(c, e)
    }
    fn get_manifest(&self, c: &CollectionId) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.rest.get_manifest(c)
    }
    fn swap_manifest(
        &self,
        c: &CollectionId,
        expected: u64,
        version: u64,
        m: &[u8],
    ) -> Result<Swap, StoreError> {
        self.rest.swap_manifest(c, expected, version, m)
    }
    fn list_collections(&self) -> Result<Vec<CollectionId>, StoreError> {
        self.rest.list_collections()
    }
    fn put_record(&self, k: RecordKind, key: &[u8], v: &[u8]) -> Result<(), StoreError> {
        self.rest.put_record(k, key, v)
    }
    fn insert_record(&self, k: RecordKind, key: &[u8], v: &[u8]) -> Result<bool, StoreError> {
        self.rest.insert_record(k, key, v)
    }
    fn get_record(&self, k: RecordKind, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.rest.get_record(k, key)
    }
    fn list_records(&self, k: RecordKind, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.rest.list_records(k, prefix)
    }
}

/// Peak resident set size of this process so far (`VmHWM`), in MiB (NaN where
/// `/proc/self/status` is not there).
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A pseudo-random stream of `left` bytes from `rng` that never holds more than its reader's
/// buffer (at most 64 KiB per read).
pub struct Source<R> {
    /// Where the bytes come from.
    pub rng: R,
    /// Bytes still to give.
    pub left: u64,
}

impl<R: rand_core::RngCore> std::io::Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize).min(64 * 1024);
        self.rng.fill_bytes(&mut buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// A cheap running checksum and byte count of what is written, to compare what went in
/// with what came out without keeping either.
pub struct Sum(pub std::collections::hash_map::DefaultHasher, pub u64);

impl std::io::Write for Sum {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::hash::Hasher::write(&mut self.0, buf);
        self.1 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
