//! Sealed pages (docs/spec/pages.md §3): the unit the store keeps and the server syncs.
//!
//! ```text
//! page keys  = HKDF-SHA256(ikm = data key, salt = empty,
//!                          info = "vault/v1/page-keys\0" || u32be(index), L = 80)
//!            → K_enc (32) || K_mac (32) || IV (16)
//! inner      = u8 codec || u32be content_len || u32be body_len || body || zero padding
//! C          = AES-256-CTR(K_enc, IV, inner)
//! T          = HMAC-SHA256(K_mac, position || u32be(len C) || C)
//! position   = "VPAG" || u8 version || u8 suite || vault_id[16] || collection_id[16]
//!              || object_id[16] || u64be object_version || u32be key_epoch
//!              || u32be page_index || u8 final
//! page       = u8 version (1) || u8 suite (1) || C || T
//! ```
//!
//! The data key is random per object version, so every page of every write has its own
//! key stream (THREATS C22). The position is not stored: the reader supplies where it
//! expects the page to be, so a page moved to another object, index, version or collection,
//! or a non-final page presented as the last one, fails the MAC (C10, C11). The tag is
//! checked in constant time before anything is decrypted or decompressed (C9, I1), and
//! decompression is bounded by the page size the object header declares.

use aes::cipher::{KeyIvInit, StreamCipher};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{integrity, Error};
use crate::ids::{CollectionId, ObjectId, VaultId};
use crate::keys::DataKey;

/// Page format version.
pub const PAGE_VERSION: u8 = 1;
/// Algorithm suite 1: HKDF-SHA256, AES-256-CTR, HMAC-SHA256, zstd.
pub const PAGE_SUITE: u8 = 1;
/// Bytes a sealed page adds around its encrypted inner part: version, suite and tag.
pub const PAGE_OVERHEAD: usize = 2 + TAG_LEN;
/// Bytes of the inner header (codec, content length, body length).
pub const INNER_HEADER: usize = 9;
const TAG_LEN: usize = 32;
const POSITION_LEN: usize = 4 + 1 + 1 + 16 + 16 + 16 + 8 + 4 + 4 + 1;
const LABEL_PAGE_KEYS: &[u8] = b"vault/v1/page-keys\0";

/// Smallest allowed page size (content bytes per page).
pub const MIN_PAGE_SIZE: u32 = 4 * 1024;
/// Largest allowed page size.
pub const MAX_PAGE_SIZE: u32 = 16 * 1024 * 1024;
/// The default page size: 1 MiB (docs/spec/pages.md §2 gives the reasons).
pub const DEFAULT_PAGE_SIZE: u32 = 1024 * 1024;

const CODEC_STORED: u8 = 0;
const CODEC_ZSTD: u8 = 1;

/// How page contents are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Never compress (for data that mixes secrets with attacker-chosen bytes, THREATS C24,
    /// or data known to be incompressible).
    None,
    /// zstd at the given level (1..=19); a page is stored uncompressed when compression
    /// does not make it smaller.
    Zstd(i32),
}

impl Default for Compression {
    /// zstd level 3.
    fn default() -> Self {
        Compression::Zstd(3)
    }
}

/// Where a page belongs. Authenticated by the page MAC, never stored in the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagePosition {
    /// The vault.
    pub vault: VaultId,
    /// The collection.
    pub collection: CollectionId,
    /// The object.
    pub object: ObjectId,
    /// The object version this page belongs to.
    pub object_version: u64,
    /// The collection key epoch the object was written under.
    pub key_epoch: u32,
    /// Index of the page in the object, from 0.
    pub index: u32,
    /// Whether this is the object's last page.
    pub last: bool,
}

impl PagePosition {
    fn encode(&self) -> [u8; POSITION_LEN] {
        let mut p = [0u8; POSITION_LEN];
        let mut w = 0;
        let mut put = |bytes: &[u8]| {
            p[w..w + bytes.len()].copy_from_slice(bytes);
            w += bytes.len();
        };
        put(b"VPAG");
        put(&[PAGE_VERSION, PAGE_SUITE]);
        put(self.vault.as_bytes());
        put(self.collection.as_bytes());
        put(self.object.as_bytes());
        put(&self.object_version.to_be_bytes());
        put(&self.key_epoch.to_be_bytes());
        put(&self.index.to_be_bytes());
        put(&[u8::from(self.last)]);
        p
    }
}

#[derive(Zeroize, ZeroizeOnDrop)]
struct PageKeys {
    enc: [u8; 32],
    mac: [u8; 32],
    iv: [u8; 16],
}

fn page_keys(key: &DataKey, index: u32) -> PageKeys {
    let hk = Hkdf::<Sha256>::new(None, key.expose_bytes());
    let mut okm = Zeroizing::new([0u8; 80]);
    // 80 bytes is far below HKDF-SHA256's limit: expansion cannot fail.
    let _ = hk.expand_multi_info(&[LABEL_PAGE_KEYS, &index.to_be_bytes()], &mut *okm);
    let mut k = PageKeys {
        enc: [0; 32],
        mac: [0; 32],
        iv: [0; 16],
    };
    k.enc.copy_from_slice(&okm[..32]);
    k.mac.copy_from_slice(&okm[32..64]);
    k.iv.copy_from_slice(&okm[64..]);
    k
}

fn tag_start(keys: &PageKeys, position: &PagePosition, ciphertext_len: usize) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&keys.mac)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(&position.encode());
    mac.update(&(ciphertext_len as u32).to_be_bytes());
    mac
}

fn tag(keys: &PageKeys, position: &PagePosition, ciphertext: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = tag_start(keys, position, ciphertext.len());
    mac.update(ciphertext);
    mac.finalize().into_bytes().into()
}

/// The padded length of an inner part of `len` bytes for pages of `page_size`: Padmé
/// (Nikitin et al., PETS 2019) — keep the top ⌊log2 E⌋+1 bits of the length, E = ⌊log2 len⌋
/// — capped at the largest inner part, `INNER_HEADER + page_size` (docs/spec/pages.md §4).
pub fn padded_len(len: usize, page_size: u32) -> usize {
    let cap = INNER_HEADER + page_size as usize;
    if len <= 2 {
        return len.min(cap);
    }
    let e = usize::BITS - 1 - len.leading_zeros(); // floor(log2 len)
    let s = (u32::BITS - e.leading_zeros()) as usize; // floor(log2 e) + 1
    let last_bits = (e as usize).saturating_sub(s);
    let mask = (1usize << last_bits) - 1;
    let padded = (len + mask) & !mask;
    padded.min(cap)
}

/// Seals one page of `content` (at most `page_size` bytes) at `position`.
pub fn seal_page(
    key: &DataKey,
    position: &PagePosition,
    content: &[u8],
    page_size: u32,
    compression: Compression,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    seal_page_into(key, position, content, page_size, compression, &mut out)?;
    Ok(out)
}

/// [`seal_page`] into `out` (cleared first), so a writer reuses one buffer for every page.
pub fn seal_page_into(
    key: &DataKey,
    position: &PagePosition,
    content: &[u8],
    page_size: u32,
    compression: Compression,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    if content.len() > page_size as usize || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(Error::InvalidInput(
            "page content larger than the page size",
        ));
    }
    let compressed = match compression {
        Compression::None => None,
        Compression::Zstd(level) if !content.is_empty() => {
            if looks_incompressible(content) {
                None
            } else {
                let c = zstd::bulk::compress(content, level)
                    .map_err(|_| Error::InvalidInput("zstd compression level"))?;
                (c.len() < content.len()).then_some(c)
            }
        }
        Compression::Zstd(_) => None,
    };
    let (codec, body): (u8, &[u8]) = match &compressed {
        Some(c) => (CODEC_ZSTD, c),
        None => (CODEC_STORED, content),
    };
    let inner_len = INNER_HEADER + body.len();
    let padded = padded_len(inner_len, page_size).max(inner_len);
    out.clear();
    out.reserve(2 + padded + TAG_LEN);
    out.push(PAGE_VERSION);
    out.push(PAGE_SUITE);
    out.push(codec);
    out.extend_from_slice(&(content.len() as u32).to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out.resize(2 + padded, 0);
    let keys = page_keys(key, position.index);
    // Encrypt and MAC in 32 KiB steps, so each chunk is MACed while it is still in the L1/L2
    // cache (one pass over memory instead of two). Same bytes as encrypting, then MACing.
    let mut cipher = Aes256Ctr::new(&keys.enc.into(), &keys.iv.into());
    let mut mac = tag_start(&keys, position, out.len() - 2);
    for chunk in out[2..].chunks_mut(32 * 1024) {
        cipher.apply_keystream(chunk);
        mac.update(chunk);
    }
    let t: [u8; TAG_LEN] = mac.finalize().into_bytes().into();
    out.extend_from_slice(&t);
    Ok(())
}

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// Pages of at least 64 KiB whose first 16 KiB do not compress at zstd level 1 by even 3 %
/// are stored without trying the whole page (encrypted or already-compressed data: photos,
/// video, archives). Costs about 1.5 % of a page's compression time when the data does
/// compress. Only the stored-vs-compressed choice depends on it, never the format.
fn looks_incompressible(content: &[u8]) -> bool {
    const SAMPLE: usize = 16 * 1024;
    if content.len() < 4 * SAMPLE {
        return false;
    }
    match zstd::bulk::compress(&content[..SAMPLE], 1) {
        Ok(c) => c.len() * 100 >= SAMPLE * 97,
        Err(_) => false,
    }
}

/// Opens a page sealed by [`seal_page`], expected at `position`, in an object of
/// `page_size`. Verifies the tag before decrypting; checks the inner structure and that
/// the padding is zero; decompresses into at most `page_size` bytes. Every failure is
/// [`Error::Integrity`] and releases nothing.
pub fn open_page(
    key: &DataKey,
    position: &PagePosition,
    sealed: &[u8],
    page_size: u32,
) -> Result<Vec<u8>, Error> {
    if sealed.len() < PAGE_OVERHEAD + INNER_HEADER {
        return Err(integrity("page too short"));
    }
    if sealed[0] != PAGE_VERSION || sealed[1] != PAGE_SUITE {
        return Err(Error::UnsupportedFormat);
    }
    let max_inner = INNER_HEADER + page_size as usize;
    let (ciphertext, received) = sealed[2..].split_at(sealed.len() - 2 - TAG_LEN);
    if ciphertext.len() > max_inner {
        return Err(integrity("page longer than its object's page size allows"));
    }
    let keys = page_keys(key, position.index);
    let expected = tag(&keys, position, ciphertext);
    if !bool::from(expected.ct_eq(received)) {
        return Err(integrity("page tag mismatch"));
    }
    // Page contents are the application's data, handed to it as plain `Vec`s; they are not
    // zeroized (keys are). See docs/spec/pages.md §3.
    let mut inner = ciphertext.to_vec();
    Aes256Ctr::new(&keys.enc.into(), &keys.iv.into()).apply_keystream(&mut inner);
    // Authenticated from here on; the checks below catch a writer's bug, not an attacker.
    let codec = inner[0];
    let content_len = u32::from_be_bytes([inner[1], inner[2], inner[3], inner[4]]) as usize;
    let body_len = u32::from_be_bytes([inner[5], inner[6], inner[7], inner[8]]) as usize;
    if content_len > page_size as usize || body_len > inner.len() - INNER_HEADER {
        return Err(integrity("page inner lengths out of range"));
    }
    if inner[INNER_HEADER + body_len..].iter().any(|&b| b != 0) {
        return Err(integrity("page padding is not zero"));
    }
    match codec {
        CODEC_STORED if body_len == content_len => {
            inner.copy_within(INNER_HEADER..INNER_HEADER + body_len, 0);
            inner.truncate(body_len);
            Ok(inner)
        }
        CODEC_ZSTD => {
            let body = &inner[INNER_HEADER..INNER_HEADER + body_len];
            let mut out = Vec::with_capacity(content_len);
            let n = zstd::bulk::Decompressor::new()
                .and_then(|mut d| d.decompress_to_buffer(body, &mut out))
                .map_err(|_| integrity("page does not decompress within its declared size"))?;
            if n != content_len {
                return Err(integrity("page decompressed to another length"));
            }
            Ok(out)
        }
        _ => Err(integrity("unknown page codec or stored length mismatch")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn padme_matches_the_paper_and_caps() {
        // Values from the Padmé definition: lengths with E = 9 (512..1023) keep the top
        // 4 bits, so they round up to multiples of 2^(9-4) = 32.
        assert_eq!(padded_len(513, DEFAULT_PAGE_SIZE), 544);
        assert_eq!(padded_len(1000, DEFAULT_PAGE_SIZE), 1024);
        assert_eq!(padded_len(1024, DEFAULT_PAGE_SIZE), 1024);
        for len in 1..100_000usize {
            let p = padded_len(len, DEFAULT_PAGE_SIZE);
            assert!(p >= len);
            assert!((p - len) * 100 <= len * 12 + 100, "{len} -> {p}");
        }
        let full = INNER_HEADER + DEFAULT_PAGE_SIZE as usize;
        assert_eq!(padded_len(full, DEFAULT_PAGE_SIZE), full);
        // Just above 1 MiB, Padmé would round up to 1 MiB + 32 KiB: capped at the full page.
        assert_eq!(padded_len(full - 4, DEFAULT_PAGE_SIZE), full);
        assert_eq!(padded_len(full - 5000, DEFAULT_PAGE_SIZE), 1 << 20);
    }
}
