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
