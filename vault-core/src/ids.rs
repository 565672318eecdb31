//! Identifiers: 128-bit random values, unguessable and meaningless to the server.

use core::fmt;

use rand_core::CryptoRngCore;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 16]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = 16;

            /// A fresh random id.
            pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
                let mut id = [0u8; 16];
                rng.fill_bytes(&mut id);
                Self(id)
            }

            /// An id from its bytes.
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(bytes)
            }

            /// The bytes.
            pub const fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }

            /// Parses 32 lower- or upper-case hex digits.
            pub fn from_hex(s: &str) -> Option<Self> {
                let s = s.as_bytes();
                if s.len() != 32 {
                    return None;
                }
                let mut out = [0u8; 16];
                for (i, pair) in s.chunks(2).enumerate() {
                    let hi = (pair[0] as char).to_digit(16)?;
                    let lo = (pair[1] as char).to_digit(16)?;
                    out[i] = (hi * 16 + lo) as u8;
                }
                Some(Self(out))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

id_type!(
    /// A vault: one user's (or one application's) set of collections.
    VaultId
);
id_type!(
    /// A collection: a set of objects under one collection key and one signed manifest.
    CollectionId
);
id_type!(
    /// An object: a file or a record pack, stored as a sealed header and sealed pages.
    ObjectId
);
id_type!(
    /// A security group: members listed in a signed, hash-chained roster, sharing one
    /// exchange key per epoch (docs/spec/groups.md).
    GroupId
);
