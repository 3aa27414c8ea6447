//! Password hashes in the formats Mosquitto writes, and hashing new passwords.
//!
//! | prefix | layout | algorithm |
//! |---|---|---|
//! | `$6$` | `$6$SALT$HASH` | SHA-512 over password then salt (Mosquitto 1.x) |
//! | `$7$` | `$7$ITERATIONS$SALT$HASH` | PBKDF2-HMAC-SHA512 (Mosquitto 2.0 default) |
//! | `$argon2id$` | PHC string `$argon2id$v=19$m=..,t=..,p=..$SALT$HASH` | Argon2id (Mosquitto 2.1 default) |
//!
//! For `$6$` and `$7$`, SALT and HASH are standard base64 (padding optional) and HASH is 64 bytes. For
//! Argon2id they are base64 without padding, as in the PHC string format.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine, GeneralPurpose, GeneralPurposeConfig};
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::error::HashError;

/// Iterations written for `$7$` hashes: Mosquitto 2.1's default (Mosquitto 2.0 wrote 101).
pub const PBKDF2_DEFAULT_ITERATIONS: u32 = 1000;
/// Argon2id memory cost written, in KiB (Mosquitto 2.1's value: 46 MiB).
pub const ARGON2_DEFAULT_M_KIB: u32 = 47_104;
/// Argon2id time cost written (Mosquitto 2.1's value).
pub const ARGON2_DEFAULT_T: u32 = 1;
/// Argon2id parallelism written (Mosquitto 2.1's value).
pub const ARGON2_DEFAULT_P: u32 = 1;

/// Largest `$7$` iteration count accepted when reading, so a file cannot stall every login.
pub const PBKDF2_MAX_ITERATIONS: u32 = 10_000_000;
/// Largest Argon2 memory cost accepted when reading, in KiB (1 GiB).
pub const ARGON2_MAX_M_KIB: u32 = 1 << 20;
/// Largest Argon2 time cost accepted when reading.
pub const ARGON2_MAX_T: u32 = 1_000;
/// Largest Argon2 parallelism accepted when reading.
pub const ARGON2_MAX_P: u32 = 64;

const SHA512_LEN: usize = 64;
/// Mosquitto 2.0 only reads 12-byte salts for `$6$` and `$7$`; 2.1 also reads 64-byte ones.
const PBKDF2_SALT_LEN: usize = 12;
const ARGON2_SALT_LEN: usize = 16;
const ARGON2_HASH_LEN: usize = 32;
const MAX_SALT_LEN: usize = 1024;
const MAX_ARGON2_HASH_LEN: usize = 1024;

/// The hash algorithm used to write a new password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashKind {
    /// `$argon2id$...` (the default, as in Mosquitto 2.1). Mosquitto 2.0 cannot read it.
    #[default]
    Argon2id,
    /// `$7$...`: PBKDF2-HMAC-SHA512, readable by Mosquitto 2.0 and later.
    Sha512Pbkdf2,
}

/// A decoded password hash from a password file line.
#[derive(Clone)]
pub(crate) enum StoredHash {
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
    Pbkdf2Sha512 { iterations: u32, salt: Vec<u8>, hash: Vec<u8> },
    Argon2id { version: Version, params: Params, salt: Vec<u8>, hash: Vec<u8> },
}

impl std::fmt::Debug for StoredHash {
    /// Shows the scheme only: hashes stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.scheme())
    }
}

/// Why an encoded hash could not be decoded: the scheme and a reason, never the hash itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeHashError {
    Unsupported,
    Malformed { scheme: &'static str, reason: &'static str },
}

fn b64() -> GeneralPurpose {
    GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

fn b64_no_pad() -> GeneralPurpose {
    GeneralPurpose::new(&alphabet::STANDARD, GeneralPurposeConfig::new().with_encode_padding(false))
}

impl StoredHash {
    pub(crate) fn scheme(&self) -> &'static str {
        match self {
            StoredHash::Sha512 { .. } => "$6$",
            StoredHash::Pbkdf2Sha512 { .. } => "$7$",
            StoredHash::Argon2id { .. } => "$argon2id$",
        }
    }

    /// Decodes the second field of a password file line.
    pub(crate) fn decode(encoded: &str) -> Result<StoredHash, DecodeHashError> {
        if let Some(rest) = encoded.strip_prefix("$6$") {
            decode_sha512(rest)
        } else if let Some(rest) = encoded.strip_prefix("$7$") {
            decode_pbkdf2(rest)
        } else if let Some(rest) = encoded.strip_prefix("$argon2id$") {
            decode_argon2id(rest)
        } else {
            Err(DecodeHashError::Unsupported)
        }
    }

    /// Hashes `password` with this entry's parameters and compares in constant time.
    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        let computed = match self {
            StoredHash::Sha512 { salt, .. } => {
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                digest.finalize().to_vec()
            }
            StoredHash::Pbkdf2Sha512 { iterations, salt, hash } => {
                let mut out = vec![0u8; hash.len()];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                out
            }
            StoredHash::Argon2id { version, params, salt, hash } => {
                let mut out = vec![0u8; hash.len()];
                let argon2 = Argon2::new(Algorithm::Argon2id, *version, params.clone());
                if argon2.hash_password_into(password, salt, &mut out).is_err() {
                    return false;
                }
                out
            }
        };
        let stored = match self {
            StoredHash::Sha512 { hash, .. }
            | StoredHash::Pbkdf2Sha512 { hash, .. }
            | StoredHash::Argon2id { hash, .. } => hash,
        };
        computed.len() == stored.len() && bool::from(computed.ct_eq(stored))
    }
}

fn malformed(scheme: &'static str, reason: &'static str) -> DecodeHashError {
    DecodeHashError::Malformed { scheme, reason }
}

fn decode_salt_and_hash(
    scheme: &'static str,
    salt_b64: &str,
    hash_b64: &str,
) -> Result<(Vec<u8>, Vec<u8>), DecodeHashError> {
    let salt = b64().decode(salt_b64).map_err(|_| malformed(scheme, "the salt is not base64"))?;
    if salt.is_empty() || salt.len() > MAX_SALT_LEN {
        return Err(malformed(scheme, "the salt must be 1 to 1024 bytes"));
    }
    let hash = b64().decode(hash_b64).map_err(|_| malformed(scheme, "the hash is not base64"))?;
    if hash.len() != SHA512_LEN {
        return Err(malformed(scheme, "the hash must be 64 bytes"));
    }
    Ok((salt, hash))
}

fn decode_sha512(rest: &str) -> Result<StoredHash, DecodeHashError> {
    let mut fields = rest.split('$');
    let (Some(salt_b64), Some(hash_b64), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err(malformed("$6$", "expected $6$SALT$HASH"));
    };
    let (salt, hash) = decode_salt_and_hash("$6$", salt_b64, hash_b64)?;
    Ok(StoredHash::Sha512 { salt, hash })
}

fn decode_pbkdf2(rest: &str) -> Result<StoredHash, DecodeHashError> {
    let mut fields = rest.split('$');
    let (Some(iterations), Some(salt_b64), Some(hash_b64), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed("$7$", "expected $7$ITERATIONS$SALT$HASH"));
    };
    let iterations = parse_decimal(iterations)
        .filter(|n| (1..=PBKDF2_MAX_ITERATIONS).contains(n))
        .ok_or(malformed("$7$", "the iteration count must be a number from 1 to 10000000"))?;
    let (salt, hash) = decode_salt_and_hash("$7$", salt_b64, hash_b64)?;
    Ok(StoredHash::Pbkdf2Sha512 { iterations, salt, hash })
}

/// Digits only (no sign, no spaces), fitting in a u32.
fn parse_decimal(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

const ARGON2: &str = "$argon2id$";

/// `rest` is what follows `$argon2id$`: `[v=19$]m=M,t=T,p=P$SALT$HASH`.
fn decode_argon2id(rest: &str) -> Result<StoredHash, DecodeHashError> {
    let fields: Vec<&str> = rest.split('$').collect();
    let (version, params_field, salt_b64, hash_b64) = match fields.as_slice() {
        [v, p, s, h] => (decode_argon2_version(v)?, *p, *s, *h),
        // Strings from before version 1.3 of the algorithm carry no `v=` field.
        [p, s, h] => (Version::V0x10, *p, *s, *h),
        _ => return Err(malformed(ARGON2, "expected $argon2id$v=19$m=M,t=T,p=P$SALT$HASH")),
    };
    let (m, t, p) = decode_argon2_params(params_field)?;
    let salt = b64().decode(salt_b64).map_err(|_| malformed(ARGON2, "the salt is not base64"))?;
    if !(argon2::MIN_SALT_LEN..=MAX_SALT_LEN).contains(&salt.len()) {
        return Err(malformed(ARGON2, "the salt must be 8 to 1024 bytes"));
    }
    let hash = b64().decode(hash_b64).map_err(|_| malformed(ARGON2, "the hash is not base64"))?;
    if !(Params::MIN_OUTPUT_LEN..=MAX_ARGON2_HASH_LEN).contains(&hash.len()) {
        return Err(malformed(ARGON2, "the hash must be 4 to 1024 bytes"));
    }
    let params =
        Params::new(m, t, p, Some(hash.len())).map_err(|_| malformed(ARGON2, "the parameters are out of range"))?;
    Ok(StoredHash::Argon2id { version, params, salt, hash })
}

fn decode_argon2_version(field: &str) -> Result<Version, DecodeHashError> {
    match field.strip_prefix("v=").and_then(parse_decimal) {
        Some(0x13) => Ok(Version::V0x13),
        Some(0x10) => Ok(Version::V0x10),
        _ => Err(malformed(ARGON2, "the version must be v=19 or v=16")),
    }
}

fn decode_argon2_params(field: &str) -> Result<(u32, u32, u32), DecodeHashError> {
    let (mut m, mut t, mut p) = (None, None, None);
    for pair in field.split(',') {
        let (key, value) = pair.split_once('=').ok_or(malformed(ARGON2, "parameters must be m=M,t=T,p=P"))?;
        let value = parse_decimal(value).ok_or(malformed(ARGON2, "a parameter is not a number"))?;
        let slot = match key {
            "m" => &mut m,
            "t" => &mut t,
            "p" => &mut p,
            _ => return Err(malformed(ARGON2, "unknown parameter (expected m, t and p)")),
        };
        if slot.replace(value).is_some() {
            return Err(malformed(ARGON2, "a parameter is repeated"));
        }
    }
    let (Some(m), Some(t), Some(p)) = (m, t, p) else {
        return Err(malformed(ARGON2, "parameters m, t and p are all required"));
    };
    if m > ARGON2_MAX_M_KIB || t > ARGON2_MAX_T || p > ARGON2_MAX_P {
        return Err(malformed(ARGON2, "the cost is too high (m <= 1048576, t <= 1000, p <= 64)"));
    }
    Ok((m, t, p))
}

fn random_salt(len: usize) -> Result<Vec<u8>, HashError> {
    let mut salt = vec![0u8; len];
    getrandom::fill(&mut salt).map_err(|e| HashError::Random(e.to_string()))?;
    Ok(salt)
}

/// Hashes `password` with a fresh random salt into the string stored after `username:`.
///
/// Argon2id uses Mosquitto 2.1's costs (m=47104 KiB, t=1, p=1) with a 16-byte salt and a 32-byte
/// hash; `$7$` uses [`PBKDF2_DEFAULT_ITERATIONS`], a 12-byte salt (what Mosquitto 2.0 reads) and a
/// 64-byte hash.
pub fn hash_password(password: &[u8], kind: HashKind) -> Result<String, HashError> {
    match kind {
        HashKind::Argon2id => {
            let salt = random_salt(ARGON2_SALT_LEN)?;
            let params = Params::new(ARGON2_DEFAULT_M_KIB, ARGON2_DEFAULT_T, ARGON2_DEFAULT_P, Some(ARGON2_HASH_LEN))
                .map_err(|e| HashError::Hash(e.to_string()))?;
            let mut hash = [0u8; ARGON2_HASH_LEN];
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password_into(password, &salt, &mut hash)
                .map_err(|e| HashError::Hash(e.to_string()))?;
            Ok(format!(
                "$argon2id$v=19$m={ARGON2_DEFAULT_M_KIB},t={ARGON2_DEFAULT_T},p={ARGON2_DEFAULT_P}${}${}",
                b64_no_pad().encode(&salt),
                b64_no_pad().encode(hash)
            ))
        }
        HashKind::Sha512Pbkdf2 => {
            let salt = random_salt(PBKDF2_SALT_LEN)?;
            let mut hash = [0u8; SHA512_LEN];
            pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, PBKDF2_DEFAULT_ITERATIONS, &mut hash);
            Ok(format!("$7${PBKDF2_DEFAULT_ITERATIONS}${}${}", b64().encode(&salt), b64().encode(hash)))
        }
    }
}

/// Whether `encoded` is a hash this crate can verify (used by `mqttd-passwd -U` to skip lines that
/// are already hashed).
pub fn is_supported_hash(encoded: &str) -> bool {
    StoredHash::decode(encoded).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha512_fixture(password: &[u8], salt: &[u8]) -> String {
        let mut digest = Sha512::new();
        digest.update(password);
        digest.update(salt);
        format!("$6${}${}", b64().encode(salt), b64().encode(digest.finalize()))
    }

    #[test]
    fn pbkdf2_hashes_round_trip_and_refuse_other_passwords() {
        let encoded = hash_password(b"hunter2", HashKind::Sha512Pbkdf2).unwrap();
        assert!(encoded.starts_with("$7$1000$"));
        let stored = StoredHash::decode(&encoded).unwrap();
        assert!(stored.verify(b"hunter2"));
        assert!(!stored.verify(b"hunter3"));
        assert!(!stored.verify(b""));
    }

    #[test]
    fn argon2id_hashes_round_trip_and_refuse_other_passwords() {
        let encoded = hash_password(b"correct horse", HashKind::Argon2id).unwrap();
        assert!(encoded.starts_with("$argon2id$v=19$m=47104,t=1,p=1$"));
        let stored = StoredHash::decode(&encoded).unwrap();
        assert!(stored.verify(b"correct horse"));
        assert!(!stored.verify(b"correct horsf"));
    }

    #[test]
    fn two_hashes_of_one_password_differ_by_salt() {
        let a = hash_password(b"x", HashKind::Sha512Pbkdf2).unwrap();
        let b = hash_password(b"x", HashKind::Sha512Pbkdf2).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn sha512_hashes_are_password_then_salt() {
        let encoded = sha512_fixture(b"pw", b"0123456789ab");
        let stored = StoredHash::decode(&encoded).unwrap();
        assert!(stored.verify(b"pw"));
        assert!(!stored.verify(b"pw0123456789ab"));
    }

    #[test]
    fn cheap_argon2id_strings_verify_with_or_without_version() {
        let salt = b"somesaltsomesalt";
        let params = Params::new(64, 1, 1, Some(32)).unwrap();
        let mut out = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
            .hash_password_into(b"pw", salt, &mut out)
            .unwrap();
        let encoded = format!("$argon2id$v=19$m=64,t=1,p=1${}${}", b64_no_pad().encode(salt), b64_no_pad().encode(out));
        assert!(StoredHash::decode(&encoded).unwrap().verify(b"pw"));
        Argon2::new(Algorithm::Argon2id, Version::V0x10, params).hash_password_into(b"pw", salt, &mut out).unwrap();
        let old = format!("$argon2id$t=1,p=1,m=64${}${}", b64_no_pad().encode(salt), b64_no_pad().encode(out));
        assert!(StoredHash::decode(&old).unwrap().verify(b"pw"));
    }

    #[test]
    fn malformed_hashes_are_refused_with_a_reason() {
        let bad = [
            "$6$",
            "$6$abc",
            "$6$!!!!$AAAA",
            "$6$YWJj$YWJj",
            "$7$abc$YWJj$YWJj",
            "$7$0$YWJj$YWJj",
            "$7$-5$YWJj$YWJj",
            "$7$99999999999$YWJj$YWJj",
            "$argon2id$v=19$m=64,t=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAA",
            "$argon2id$v=18$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAA",
            "$argon2id$v=19$m=4294967295,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAA",
            "$argon2id$v=19$m=64,t=1,p=1,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAA",
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$AAAAAAAA",
            "$argon2id$v=19$m=1,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAA",
        ];
        for encoded in bad {
            assert!(
                matches!(StoredHash::decode(encoded), Err(DecodeHashError::Malformed { .. })),
                "{encoded} should be malformed"
            );
        }
        assert_eq!(StoredHash::decode("$5$abc$def").unwrap_err(), DecodeHashError::Unsupported);
        assert_eq!(StoredHash::decode("$argon2i$x").unwrap_err(), DecodeHashError::Unsupported);
    }

    #[test]
    fn debug_output_shows_the_scheme_but_not_the_hash() {
        let encoded = hash_password(b"pw", HashKind::Sha512Pbkdf2).unwrap();
        let stored = StoredHash::decode(&encoded).unwrap();
        assert_eq!(format!("{stored:?}"), "$7$");
    }
}
