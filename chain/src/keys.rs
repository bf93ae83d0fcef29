//! ed25519 keys and signatures, domain-separated signing, and key files.
//!
//! Every signature in Quire is over `len(tag) || tag || chain_id || canonical fields`
//! ([`signing_bytes`]): the tag names the kind of statement, the chain id pins it to one network,
//! so a signature can never be replayed as another kind of message or on another chain.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use thiserror::Error;

use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::hash::{Hash, tags};

/// Signing domain tags. Each names one kind of signed statement.
pub mod sign_tags {
    pub const TRANSFER: &str = "quire/v1/sign/transfer";
    pub const PRE_PREPARE: &str = "quire/v1/sign/pre-prepare";
    pub const PREPARE: &str = "quire/v1/sign/prepare";
    pub const COMMIT: &str = "quire/v1/sign/commit";
    pub const CHECKPOINT: &str = "quire/v1/sign/checkpoint";
    pub const VIEW_CHANGE: &str = "quire/v1/sign/view-change";
    pub const NEW_VIEW: &str = "quire/v1/sign/new-view";
    pub const MESSAGE: &str = "quire/v1/sign/message";
    pub const ATTESTATION: &str = "quire/v1/sign/attestation";
}

/// The exact bytes a signature covers.
pub fn signing_bytes(tag: &str, chain_id: &Hash, fields: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + tag.len() + 32 + fields.len());
    out.push(tag.len() as u8);
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(&chain_id.0);
    out.extend_from_slice(fields);
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("not a valid ed25519 public key")]
    BadPublicKey,
    #[error("weak (small-order) public key")]
    WeakPublicKey,
    #[error("signature does not verify")]
    BadSignature,
    #[error("bad address: {0}")]
    BadAddress(String),
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sig:{}", hex::encode(&self.0[..4]))
    }
}

impl Encode for Signature {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0)
    }
}

impl Decode for Signature {
    const MIN_LEN: usize = 64;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Signature(r.array()?))
    }
}

/// A decoded, checked ed25519 public key (decompression costs ~5 µs, so keep these around).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::BadPublicKey)?;
        if key.is_weak() {
            return Err(KeyError::WeakPublicKey);
        }
        Ok(PublicKey(key))
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn address(&self) -> Address {
        Address(self.0.to_bytes())
    }

    pub fn dalek(&self) -> &VerifyingKey {
        &self.0
    }

    /// Verification under Quire's one signature rule ([`crate::sig`]).
    pub fn verify(
        &self,
        tag: &str,
        chain_id: &Hash,
        fields: &[u8],
        sig: &Signature,
    ) -> Result<(), KeyError> {
        let msg = signing_bytes(tag, chain_id, fields);
        self.verify_raw(&msg, sig)
    }

    pub fn verify_raw(&self, msg: &[u8], sig: &Signature) -> Result<(), KeyError> {
        if crate::sig::verify(self, msg, sig) {
            Ok(())
        } else {
            Err(KeyError::BadSignature)
        }
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    pub fn from_hex(s: &str) -> Result<PublicKey, KeyError> {
        let bytes = hex::decode(s.trim()).map_err(|_| KeyError::BadPublicKey)?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| KeyError::BadPublicKey)?;
        PublicKey::from_bytes(&arr)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pk:{}", hex::encode(&self.to_bytes()[..4]))
    }
}

impl Encode for PublicKey {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes())
    }
}

impl Decode for PublicKey {
    const MIN_LEN: usize = 32;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        PublicKey::from_bytes(&r.array()?).map_err(|_| DecodeError::Invalid {
            what: "public key",
            reason: "not a valid ed25519 point",
        })
    }
}

/// An account address: the account's ed25519 public key, as raw bytes (it is only decompressed
/// when a signature must be checked). Written for people as `q1` + 64 hex digits of the key + 8 hex
/// digits of checksum, so that a mistyped address is caught instead of burning money.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub [u8; 32]);

impl Address {
    const PREFIX: &'static str = "q1";

    fn checksum(&self) -> [u8; 4] {
        let h = Hash::tagged(tags::ADDRESS_CHECK, &[&self.0]);
        [h.0[0], h.0[1], h.0[2], h.0[3]]
    }

    /// The decoded key. Decompressing a point costs ~5 µs, as much as a third of a batched
    /// signature check, and the same few accounts sign most transactions: decoded keys are
    /// cached (a pure function, so the cache cannot change any verdict).
    pub fn public_key(&self) -> Result<PublicKey, KeyError> {
        KEY_CACHE.get(&self.0)
    }

    pub fn parse(s: &str) -> Result<Address, KeyError> {
        let s = s.trim();
        let body = s.strip_prefix(Self::PREFIX).ok_or_else(|| {
            KeyError::BadAddress(format!("an address starts with '{}'", Self::PREFIX))
        })?;
        if body.len() != 72 {
            return Err(KeyError::BadAddress(format!(
                "an address is '{}' and 72 hex digits, this one has {} characters after the prefix",
                Self::PREFIX,
                body.len()
            )));
        }
        let bytes = hex::decode(body)
            .map_err(|_| KeyError::BadAddress("an address is hexadecimal after 'q1'".into()))?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[..32]);
        let address = Address(key);
        if address.checksum()[..] != bytes[32..] {
            return Err(KeyError::BadAddress(
                "checksum mismatch (mistyped?)".to_string(),
            ));
        }
        address.public_key()?;
        Ok(address)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            Self::PREFIX,
            hex::encode(self.0),
            hex::encode(self.checksum())
        )
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "addr:{}", hex::encode(&self.0[..4]))
    }
}

impl Encode for Address {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0)
    }
}

impl Decode for Address {
    const MIN_LEN: usize = 32;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Address(r.array()?))
    }
}

/// Decoded public keys by their bytes, bounded (cleared when full).
struct KeyCache {
    keys: std::sync::Mutex<std::collections::HashMap<[u8; 32], Result<PublicKey, KeyError>>>,
}

const KEY_CACHE_MAX: usize = 1 << 16;

static KEY_CACHE: std::sync::LazyLock<KeyCache> = std::sync::LazyLock::new(|| KeyCache {
    keys: std::sync::Mutex::new(std::collections::HashMap::new()),
});

impl KeyCache {
    fn get(&self, bytes: &[u8; 32]) -> Result<PublicKey, KeyError> {
        if let Ok(keys) = self.keys.lock()
            && let Some(hit) = keys.get(bytes)
        {
            return hit.clone();
        }
        let decoded = PublicKey::from_bytes(bytes);
        if let Ok(mut keys) = self.keys.lock() {
            if keys.len() >= KEY_CACHE_MAX {
                keys.clear();
            }
            keys.insert(*bytes, decoded.clone());
        }
        decoded
    }
}

/// A secret signing key with its public half.
#[derive(Clone)]
pub struct Keypair {
    secret: SigningKey,
    public: PublicKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({:?})", self.public)
    }
}

impl Keypair {
    pub fn generate() -> Keypair {
        Keypair::from_secret(rand::random())
    }

    /// A key from 32 secret bytes (deterministic: the simulator derives keys from its seed).
    pub fn from_secret(secret: [u8; 32]) -> Keypair {
        let secret = SigningKey::from_bytes(&secret);
        let public = PublicKey(secret.verifying_key());
        Keypair { secret, public }
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    pub fn address(&self) -> Address {
        self.public.address()
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.secret
    }

    pub fn sign(&self, tag: &str, chain_id: &Hash, fields: &[u8]) -> Signature {
        self.sign_raw(&signing_bytes(tag, chain_id, fields))
    }

    pub fn sign_raw(&self, msg: &[u8]) -> Signature {
        Signature(self.secret.sign(msg).to_bytes())
    }

    /// Writes the key as a small TOML file readable by people, with mode 0600.
    pub fn write_file(&self, path: &Path) -> Result<(), KeyFileError> {
        let text = format!(
            "# Quire secret key. Anyone who reads this file can spend from this account.\n\
             kind = \"quire-secret-key\"\n\
             secret = \"{}\"\n\
             public = \"{}\"\n\
             address = \"{}\"\n",
            hex::encode(self.secret_bytes()),
            self.public.to_hex(),
            self.address()
        );
        let io = |e: std::io::Error| KeyFileError::Io(path.display().to_string(), e.to_string());
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(())
    }

    /// Reads a secret key file, refusing one that others can read or that does not hang together.
    pub fn read_file(path: &Path) -> Result<Keypair, KeyFileError> {
        let shown = path.display().to_string();
        let meta =
            fs::metadata(path).map_err(|e| KeyFileError::Io(shown.clone(), e.to_string()))?;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions(shown, mode & 0o777));
        }
        let bytes = fs::read(path).map_err(|e| KeyFileError::Io(shown.clone(), e.to_string()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| KeyFileError::Corrupt(shown.clone(), "not text (UTF-8)".into()))?;
        Keypair::parse(&text).map_err(|reason| KeyFileError::Corrupt(shown, reason))
    }

    fn parse(text: &str) -> Result<Keypair, String> {
        #[derive(serde::Deserialize)]
        struct File {
            kind: String,
            secret: String,
            public: String,
        }
        let file: File = toml::from_str(text).map_err(|e| format!("not a key file: {e}"))?;
        if file.kind != "quire-secret-key" {
            return Err(format!("kind is '{}', not 'quire-secret-key'", file.kind));
        }
        let secret = hex::decode(file.secret.trim()).map_err(|_| "secret is not hex")?;
        let secret: [u8; 32] = secret
            .try_into()
            .map_err(|_| "secret is not 32 bytes (64 hex digits)")?;
        let keypair = Keypair::from_secret(secret);
        if keypair.public.to_hex() != file.public.trim().to_ascii_lowercase() {
            return Err("public key does not match the secret key".into());
        }
        Ok(keypair)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyFileError {
    #[error("key file {0}: {1}")]
    Io(String, String),
    #[error(
        "key file {0} has mode {1:o}: other users can read it; run `chmod 600 {0}` if you trust it"
    )]
    Permissions(String, u32),
    #[error("key file {0} is corrupt: {1}")]
    Corrupt(String, String),
}

/// The verdict of each `(signed bytes, signature, signer)`, exactly as [`PublicKey::verify_raw`]
/// gives it one at a time (the rule of [`crate::sig`]), computed in batches. A signer whose
/// address is not a valid key fails.
pub fn verify_many(items: &[(Vec<u8>, Signature, Address)]) -> Vec<bool> {
    let checks: Vec<crate::sig::Item<'_>> = items
        .iter()
        .map(|(msg, sig, from)| (msg.as_slice(), sig, from.public_key().ok()))
        .collect();
    crate::sig::verify_many(&checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u8) -> Hash {
        Hash([n; 32])
    }

    #[test]
    fn signatures_round_trip() {
        let k = Keypair::generate();
        let sig = k.sign(sign_tags::PREPARE, &chain(1), b"fields");
        k.public()
            .verify(sign_tags::PREPARE, &chain(1), b"fields", &sig)
            .unwrap();
    }

    #[test]
    fn tampered_bytes_are_rejected() {
        let k = Keypair::generate();
        let sig = k.sign(sign_tags::PREPARE, &chain(1), b"fields");
        let pk = k.public();
        assert!(
            pk.verify(sign_tags::PREPARE, &chain(1), b"fieldz", &sig)
                .is_err()
        );
        for bit in 0..512 {
            let mut bad = sig;
            bad.0[bit / 8] ^= 1 << (bit % 8);
            assert!(
                pk.verify(sign_tags::PREPARE, &chain(1), b"fields", &bad)
                    .is_err(),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn a_signature_from_another_domain_or_chain_is_rejected() {
        let k = Keypair::generate();
        let sig = k.sign(sign_tags::PREPARE, &chain(1), b"fields");
        let pk = k.public();
        assert!(
            pk.verify(sign_tags::COMMIT, &chain(1), b"fields", &sig)
                .is_err()
        );
        assert!(
            pk.verify(sign_tags::PREPARE, &chain(2), b"fields", &sig)
                .is_err()
        );
    }

    #[test]
    fn another_key_is_rejected() {
        let sig = Keypair::generate().sign(sign_tags::COMMIT, &chain(1), b"x");
        assert!(
            Keypair::generate()
                .public()
                .verify(sign_tags::COMMIT, &chain(1), b"x", &sig)
                .is_err()
        );
    }

    #[test]
    fn addresses_round_trip_and_catch_typos() {
        let a = Keypair::generate().address();
        let text = a.to_string();
        assert_eq!(Address::parse(&text).unwrap(), a);
        // Change one hex digit of the key part: the checksum catches it.
        let mut chars: Vec<char> = text.chars().collect();
        chars[10] = if chars[10] == '0' { '1' } else { '0' };
        let typo: String = chars.into_iter().collect();
        assert!(Address::parse(&typo).is_err());
        assert!(Address::parse("q1abc").is_err());
        assert!(Address::parse(&text[2..]).is_err());
        assert!(Address::parse(&format!("q1{}", "zz".repeat(36))).is_err());
    }

    #[test]
    fn batched_verification_flags_exactly_the_bad_signatures() {
        let c = chain(3);
        let mut items = Vec::new();
        for i in 0..300u32 {
            let k = Keypair::generate();
            let msg = signing_bytes(sign_tags::TRANSFER, &c, &i.to_be_bytes());
            let mut sig = k.sign_raw(&msg);
            if i % 97 == 5 {
                sig.0[3] ^= 1;
            }
            items.push((msg, sig, k.address()));
        }
        let verdicts = verify_many(&items);
        for (i, ok) in verdicts.iter().enumerate() {
            assert_eq!(*ok, i % 97 != 5, "item {i}");
        }
        // An address that is not a curve point fails only its own item.
        items[1].2 = Address([0xff; 32]);
        let verdicts = verify_many(&items);
        assert!(!verdicts[1]);
        assert!(verdicts[0] && verdicts[2]);
    }

    #[test]
    fn key_files_round_trip_with_private_mode() {
        let dir = std::env::temp_dir().join(format!("quire-key-{}", rand::random::<u64>()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.toml");
        let k = Keypair::generate();
        k.write_file(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(Keypair::read_file(&path).unwrap().public(), k.public());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn world_readable_and_corrupt_key_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("quire-key-{}", rand::random::<u64>()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.toml");
        Keypair::generate().write_file(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Keypair::read_file(&path),
            Err(KeyFileError::Permissions(..))
        ));
        let cases: [&[u8]; 5] = [
            b"garbage \x00\xff",
            b"kind = \"quire-secret-key\"\nsecret = \"zz\"\npublic = \"00\"\n",
            b"kind = \"quire-secret-key\"\nsecret = \"0011\"\npublic = \"00\"\n",
            b"kind = \"something-else\"\nsecret = \"\"\npublic = \"\"\n",
            b"",
        ];
        for bytes in cases {
            fs::write(&path, bytes).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let err = Keypair::read_file(&path).unwrap_err();
            assert!(matches!(err, KeyFileError::Corrupt(..)), "{err}");
        }
        // A public key that does not belong to the secret.
        let other = Keypair::generate();
        let text = format!(
            "kind = \"quire-secret-key\"\nsecret = \"{}\"\npublic = \"{}\"\n",
            hex::encode(Keypair::generate().secret_bytes()),
            other.public().to_hex()
        );
        fs::write(&path, text).unwrap();
        assert!(matches!(
            Keypair::read_file(&path),
            Err(KeyFileError::Corrupt(..))
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
