//! Objects: a sealed header and a sequence of sealed pages (docs/spec/pages.md §5).
//!
//! ```text
//! header plaintext = u8 kind (1: blob, 2: record table) || u64 size || u32 page_size
//!                    || u32 page_count || data_key[32] || u64 created_at || u64 modified_at
//!                    || author[16] || vec16 name || vec16 content_type
//!                    || [kind 2: u32 record_count || record_count × (vec16 key || u64 offset
//!                        || u32 len)]
//!                    || page_count × tag[32]
//! header ad        = "VOBJ" || u8 version (1) || u8 suite (1) || vault_id || collection_id
//!                    || object_id || u64 object_version || u32 key_epoch
//! sealed header    = seal(collection key, "vault/v1/object-header", header ad, plaintext)
//! object digest    = SHA-256("vault/v1/object-digest\0" || sealed header)
//! ```
//!
//! The header lists the tag of every page, so the digest that the signed manifest carries
//! commits to every byte of the object; the reader compares each page's tag with the
//! header's before it trusts the page (C13).

use std::io::{self, Read};

use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use vault_keyring::seal::{self, Context};
use vault_keyring::{KeyringId, SymmetricKey};
use zeroize::Zeroizing;

use crate::error::{integrity, Error};
use crate::ids::{CollectionId, ObjectId, VaultId};
use crate::keys::{DataKey, HASH_OBJECT, SEAL_OBJECT_HEADER};
use crate::page::{
    open_page, seal_page_into, Compression, PagePosition, MAX_PAGE_SIZE, MIN_PAGE_SIZE,
};
use crate::store::{ObjectAddress, PageAddress, Store, Verified};
use crate::wire::{Malformed, Reader, Writer};

const HEADER: Context = Context::new(SEAL_OBJECT_HEADER);
const KIND_BLOB: u8 = 1;
const KIND_RECORDS: u8 = 2;
/// Longest record key in bytes.
pub const MAX_RECORD_KEY_LEN: usize = 1024;
/// Most records one record table holds.
pub const MAX_RECORDS: u32 = 10_000_000;
/// Longest object name in bytes.
pub const MAX_NAME_LEN: usize = 4096;
/// Longest content type in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;
const TAG_LEN: usize = 32;

/// Where an object version lives, as bound into its header and pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectPlace {
    /// Vault.
    pub vault: VaultId,
    /// Collection.
    pub collection: CollectionId,
    /// Object.
    pub object: ObjectId,
    /// Object version (from 1).
    pub version: u64,
    /// Collection key epoch.
    pub key_epoch: u32,
}

impl ObjectPlace {
    fn ad(&self) -> Vec<u8> {
        let mut ad = Vec::with_capacity(4 + 2 + 48 + 12);
        ad.extend_from_slice(b"VOBJ");
        ad.extend_from_slice(&[1, 1]);
        ad.extend_from_slice(self.vault.as_bytes());
        ad.extend_from_slice(self.collection.as_bytes());
        ad.extend_from_slice(self.object.as_bytes());
        ad.put_u64(self.version);
        ad.put_u32(self.key_epoch);
        ad
    }

    pub(crate) fn address(&self) -> ObjectAddress {
        ObjectAddress {
            collection: self.collection,
            object: self.object,
            version: self.version,
        }
    }

    fn page(&self, index: u32, last: bool) -> (PagePosition, PageAddress) {
        (
            PagePosition {
                vault: self.vault,
                collection: self.collection,
                object: self.object,
                object_version: self.version,
                key_epoch: self.key_epoch,
                index,
                last,
            },
            PageAddress {
                collection: self.collection,
                object: self.object,
                version: self.version,
                index,
            },
        )
    }
}

/// Metadata of an object. Lives only inside the sealed header (THREATS C12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Name (a path, a record key…), unique in its collection.
    pub name: String,
    /// Content length in bytes.
    pub size: u64,
    /// Creation time of this object (first version), seconds since the Unix epoch.
    pub created_at: u64,
    /// Time of this version.
    pub modified_at: u64,
    /// The keyring that wrote this version.
    pub author: KeyringId,
    /// A MIME type, or empty.
    pub content_type: String,
}

/// Where one record's value lies in a record table's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub key: Vec<u8>,
    pub offset: u64,
    pub len: u32,
}

/// A decoded header.
pub(crate) struct Header {
    pub meta: ObjectMeta,
    pub page_size: u32,
    pub tags: Vec<[u8; TAG_LEN]>,
    pub key: DataKey,
    /// The encrypted record index of a record table (`None` for a blob).
    pub records: Option<Vec<IndexEntry>>,
}

impl Header {
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut p = Zeroizing::new(Vec::with_capacity(128 + self.tags.len() * TAG_LEN));
        p.put_u8(if self.records.is_some() {
            KIND_RECORDS
        } else {
            KIND_BLOB
        });
        p.put_u64(self.meta.size);
        p.put_u32(self.page_size);
        p.put_u32(self.tags.len() as u32);
        p.extend_from_slice(self.key.expose_bytes());
        p.put_u64(self.meta.created_at);
        p.put_u64(self.meta.modified_at);
        p.extend_from_slice(self.meta.author.as_bytes());
        p.put_vec16(self.meta.name.as_bytes());
        p.put_vec16(self.meta.content_type.as_bytes());
        if let Some(records) = &self.records {
            p.put_u32(records.len() as u32);
            for e in records {
                p.put_vec16(&e.key);
                p.put_u64(e.offset);
                p.put_u32(e.len);
            }
        }
        for t in &self.tags {
            p.extend_from_slice(t);
        }
        p
    }

    pub(crate) fn decode(plain: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(plain);
        let kind = r.u8()?;
        if kind != KIND_BLOB && kind != KIND_RECORDS {
            return Err("unknown object kind");
        }
        let size = r.u64()?;
        let page_size = r.u32()?;
        if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err("page size out of range");
        }
        let page_count = r.u32()?;
        let key = DataKey::from_bytes(r.array()?);
        let created_at = r.u64()?;
        let modified_at = r.u64()?;
        let author = KeyringId::from_bytes(r.array()?);
        let name = r.string16()?;
        let content_type = r.string16()?;
        if name.len() > MAX_NAME_LEN || content_type.len() > MAX_CONTENT_TYPE_LEN {
            return Err("name or content type too long");
        }
        let records = if kind == KIND_RECORDS {
            Some(decode_index(&mut r, size)?)
        } else {
            None
        };
        if r.remaining() != page_count as usize * TAG_LEN {
            return Err("tag list length differs from the page count");
        }
        // Page count and size must agree: full pages, then one last page (possibly empty).
        let expected_pages = expected_page_count(size, page_size);
        if u64::from(page_count) != expected_pages {
            return Err("page count does not match size and page size");
        }
        let mut tags = Vec::with_capacity(page_count as usize);
        for _ in 0..page_count {
            tags.push(r.array()?);
        }
        r.finish()?;
        Ok(Self {
            meta: ObjectMeta {
                name,
                size,
                created_at,
                modified_at,
                author,
                content_type,
            },
            page_size,
            tags,
            key,
            records,
        })
    }
}

/// Decodes a record index strictly: keys strictly increasing and at most
/// `MAX_RECORD_KEY_LEN` bytes, values contiguous from offset 0 in key order, filling the
/// object's `size` exactly.
fn decode_index(r: &mut Reader<'_>, size: u64) -> Result<Vec<IndexEntry>, Malformed> {
    let count = r.u32()?;
    if count > MAX_RECORDS {
        return Err("too many records");
    }
    // Each entry takes at least 14 bytes: do not trust `count` for the allocation.
    let mut out: Vec<IndexEntry> = Vec::with_capacity((count as usize).min(r.remaining() / 14));
    let mut next_offset = 0u64;
    for _ in 0..count {
        let key = r.vec16()?;
        if key.len() > MAX_RECORD_KEY_LEN {
            return Err("record key too long");
        }
        if out.last().is_some_and(|prev| prev.key.as_slice() >= key) {
            return Err("record keys not strictly increasing");
        }
        let offset = r.u64()?;
        let len = r.u32()?;
        if offset != next_offset {
            return Err("record values not contiguous");
        }
        next_offset = offset
            .checked_add(u64::from(len))
            .ok_or("record offset overflow")?;
        out.push(IndexEntry {
            key: key.to_vec(),
            offset,
            len,
        });
    }
    if next_offset != size {
        return Err("record values do not fill the object");
    }
    Ok(out)
}

/// Pages an object of `size` bytes takes: `max(1, ceil(size / page_size))`.
pub(crate) fn expected_page_count(size: u64, page_size: u32) -> u64 {
    size.div_ceil(u64::from(page_size)).max(1)
}

/// Seals and stores a header; returns the object digest for the manifest.
fn store_header(
    rng: &mut impl CryptoRngCore,
    store: &dyn Store,
    ck: &SymmetricKey,
    place: &ObjectPlace,
    header: &Header,
) -> Result<[u8; 32], Error> {
    let sealed = seal::seal(rng, ck, HEADER, &place.ad(), &header.encode());
    store.put_header(&place.address(), &sealed)?;
    Ok(digest(&sealed))
}

pub(crate) fn digest(sealed_header: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(HASH_OBJECT)
        .chain_update(sealed_header)
        .finalize()
        .into()
}

/// Reads, checks against the manifest digest, and opens a header.
pub(crate) fn load_header(
    store: &dyn Store,
    ck: &SymmetricKey,
    place: &ObjectPlace,
    expected_digest: &[u8; 32],
) -> Result<Header, Error> {
    let address = place.address();
    let sealed = store
        .get_header(&address)?
        .ok_or_else(|| integrity("object header missing"))?;
    if !bool::from(digest(&sealed).ct_eq(expected_digest)) {
        return Err(integrity(
            "object header differs from the manifest's digest",
        ));
    }
    let plain = seal::open(ck, HEADER, &place.ad(), &sealed)?;
    let header = Header::decode(&plain).map_err(integrity)?;
    store.verified(Verified::Header {
        address: &address,
        sealed: &sealed,
    });
    Ok(header)
}

/// What a finished write produced: what the manifest records.
#[derive(Clone, Debug)]
pub(crate) struct Written {
    pub meta: ObjectMeta,
    pub page_count: u32,
    pub digest: [u8; 32],
}

/// One `read` call, retried on `Interrupted`.
fn read_some(reader: &mut dyn io::Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Streams an object into sealed pages; memory is one page, whatever the object's size.
pub struct ObjectWriter<'a, R: CryptoRngCore> {
    rng: R,
    store: &'a dyn Store,
    ck: &'a SymmetricKey,
    place: ObjectPlace,
    meta: ObjectMeta,
    page_size: u32,
    compression: Compression,
    key: DataKey,
    /// The page being collected: its first `filled` bytes. Grows (zeroed, doubling) up to
    /// `page_size` as data arrives, so a small object never allocates a whole page.
    buffer: Vec<u8>,
    filled: usize,
    /// The sealed page, reused from page to page.
    sealed: Vec<u8>,
    tags: Vec<[u8; TAG_LEN]>,
    size: u64,
    records: Option<Vec<IndexEntry>>,
}

impl<'a, R: CryptoRngCore> ObjectWriter<'a, R> {
    pub(crate) fn new(
        mut rng: R,
        store: &'a dyn Store,
        ck: &'a SymmetricKey,
        place: ObjectPlace,
        meta: ObjectMeta,
        page_size: u32,
        compression: Compression,
    ) -> Result<Self, Error> {
        if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(Error::InvalidInput(
                "page size must be a power of two from 4 KiB to 16 MiB",
            ));
        }
        if meta.name.len() > MAX_NAME_LEN || meta.content_type.len() > MAX_CONTENT_TYPE_LEN {
            return Err(Error::InvalidInput("name or content type too long"));
        }
        let key = DataKey::generate(&mut rng);
        Ok(Self {
            rng,
            store,
            ck,
            place,
            meta,
            page_size,
            compression,
            key,
            buffer: Vec::new(),
            filled: 0,
            sealed: Vec::new(),
            tags: Vec::new(),
            size: 0,
            records: None,
        })
    }

    /// Makes this object a record table with `index` (which must describe the bytes
    /// written, in key order).
    pub(crate) fn set_records(&mut self, index: Vec<IndexEntry>) {
        self.records = Some(index);
    }

    fn emit(&mut self, last: bool) -> Result<(), Error> {
        let buffer = std::mem::take(&mut self.buffer);
        let result = self.emit_page(&buffer[..self.filled], last);
        self.buffer = buffer;
        self.filled = 0;
        result
    }

    /// Makes the page buffer at least `needed` bytes long (at most a page), doubling.
    fn grow(&mut self, needed: usize) {
        if self.buffer.len() < needed {
            let page = self.page_size as usize;
            let len = needed.max(self.buffer.len() * 2).max(64 * 1024).min(page);
            self.buffer.resize(len, 0);
        }
    }

    /// Reads `reader` to its end straight into the page buffer (no intermediate copy, as
    /// `std::io::copy` would make), sealing each page as it fills. A full page is sealed as
    /// "not last" only once more data is known to follow.
    pub(crate) fn read_from(&mut self, reader: &mut dyn io::Read) -> io::Result<()> {
        let page = self.page_size as usize;
        loop {
            if self.filled == page {
                let mut ahead = [0u8; 4096]; // MIN_PAGE_SIZE: always fits a page
                let n = read_some(reader, &mut ahead)?;
                if n == 0 {
                    return Ok(());
                }
                self.emit(false).map_err(io::Error::other)?;
                self.grow(n);
                self.buffer[..n].copy_from_slice(&ahead[..n]);
                self.filled = n;
                self.size += n as u64;
                continue;
            }
            self.grow(self.filled + 1);
            let n = read_some(reader, &mut self.buffer[self.filled..])?;
            if n == 0 {
                return Ok(());
            }
            self.filled += n;
            self.size += n as u64;
        }
    }

    fn emit_page(&mut self, content: &[u8], last: bool) -> Result<(), Error> {
        let index = u32::try_from(self.tags.len())
            .map_err(|_| Error::InvalidInput("object has too many pages"))?;
        let (position, address) = self.place.page(index, last);
        seal_page_into(
            &self.key,
            &position,
            content,
            self.page_size,
            self.compression,
            &mut self.sealed,
        )?;
        let page = &self.sealed;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&page[page.len() - TAG_LEN..]);
        self.store.put_page(&address, page)?;
        self.tags.push(tag);
        Ok(())
    }

    /// Seals the last page and the header. The object becomes visible only when the
    /// collection commits the manifest that lists it.
    pub(crate) fn finish(mut self) -> Result<Written, Error> {
        self.emit(true)?;
        self.meta.size = self.size;
        let header = Header {
            meta: self.meta.clone(),
            page_size: self.page_size,
            tags: std::mem::take(&mut self.tags),
            key: DataKey::from_bytes(*self.key.expose_bytes()),
            records: self.records.take(),
        };
        let digest = store_header(&mut self.rng, self.store, self.ck, &self.place, &header)?;
        Ok(Written {
            meta: header.meta,
            page_count: header.tags.len() as u32,
            digest,
        })
    }
}

/// Streams an object's plaintext out, page by page, verifying each page before releasing a
/// byte of it. Memory is one page.
pub struct ObjectReader<'a> {
    store: &'a dyn Store,
    place: ObjectPlace,
    header: Header,
    next: u32,
    page: Vec<u8>,
    offset: usize,
    /// The last page `read_range` opened, kept for the next record lookup.
    cached: Option<(u32, Vec<u8>)>,
}

impl<'a> ObjectReader<'a> {
    pub(crate) fn new(store: &'a dyn Store, place: ObjectPlace, header: Header) -> Self {
        Self {
            store,
            place,
            header,
            next: 0,
            page: Vec::new(),
            offset: 0,
            cached: None,
        }
    }

    /// The object's metadata (from its authenticated header).
    pub fn meta(&self) -> &ObjectMeta {
        &self.header.meta
    }

    /// Fetches, checks against the header's tag list, and opens page `index`; checks its
    /// length against the layout (full pages, then the rest).
    fn load_page(&self, index: u32) -> Result<Vec<u8>, Error> {
        let count = self.header.tags.len() as u32;
        let last = index + 1 == count;
        let (position, address) = self.place.page(index, last);
        let sealed = self
            .store
            .get_page(&address)?
            .ok_or_else(|| integrity("page missing"))?;
        let tag_at = sealed
            .len()
            .checked_sub(TAG_LEN)
            .ok_or_else(|| integrity("page too short"))?;
        if !bool::from(sealed[tag_at..].ct_eq(&self.header.tags[index as usize])) {
            return Err(integrity("page tag differs from the header's list"));
        }
        // The verified header fixes the page format: a page of another format version
        // was altered, not written by a newer client.
        let content = open_page(&self.header.key, &position, &sealed, self.header.page_size)
            .map_err(|e| match e {
                Error::UnsupportedFormat => integrity("page format differs from its header's"),
                other => other,
            })?;
        let page_size = u64::from(self.header.page_size);
        let expected = if last {
            self.header.meta.size - u64::from(index) * page_size
        } else {
            page_size
        };
        if content.len() as u64 != expected {
            return Err(integrity("page length breaks the object layout"));
        }
        self.store.verified(Verified::Page {
            address: &address,
            sealed: &sealed,
        });
        Ok(content)
    }

    fn load_next(&mut self) -> Result<bool, Error> {
        if self.next as usize >= self.header.tags.len() {
            return Ok(false);
        }
        self.page = self.load_page(self.next)?;
        self.offset = 0;
        self.next += 1;
        Ok(true)
    }

    /// Reads `len` bytes at `offset`, opening only the pages that hold them.
    pub(crate) fn read_range(&mut self, offset: u64, len: u32) -> Result<Vec<u8>, Error> {
        let end = offset
            .checked_add(u64::from(len))
            .filter(|end| *end <= self.header.meta.size)
            .ok_or_else(|| integrity("range outside the object"))?;
        let mut out = Vec::with_capacity(len as usize);
        if len == 0 {
            return Ok(out);
        }
        let page_size = u64::from(self.header.page_size);
        for index in offset / page_size..=(end - 1) / page_size {
            let index32 = index as u32;
            if self.cached.as_ref().map(|(i, _)| *i) != Some(index32) {
                self.cached = Some((index32, self.load_page(index32)?));
            }
            let Some((_, page)) = &self.cached else {
                unreachable!("the page was just cached")
            };
            let start = index * page_size;
            let from = offset.max(start) - start;
            let to = end.min(start + page_size) - start;
            out.extend_from_slice(&page[from as usize..to as usize]);
        }
        Ok(out)
    }

    /// The record index of a record table.
    pub(crate) fn records(&self) -> Option<&[IndexEntry]> {
        self.header.records.as_deref()
    }
}

impl Read for ObjectReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.offset == self.page.len() {
            if !self.load_next().map_err(io::Error::other)? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.page.len() - self.offset);
        buf[..n].copy_from_slice(&self.page[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

/// Turns an `io::Error` from [`ObjectReader`] back into the vault error it carries.
pub fn io_to_vault_error(e: io::Error) -> Error {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::Integrity) => Error::Integrity,
        Some(Error::UnsupportedFormat) => Error::UnsupportedFormat,
        _ => match e.downcast::<Error>() {
            Ok(inner) => inner,
            Err(e) => Error::Io(e),
        },
    }
}
