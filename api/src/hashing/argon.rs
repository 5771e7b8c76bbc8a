//! The argon2 computations themselves, in memory the caller keeps between
//! hashes.

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// OWASP password storage cheat sheet: m=19456 KiB, t=2, p=1.
pub const M_COST: u32 = 19_456;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;

/// Buffers at least this large (in 1 KiB blocks: 33 MiB) are served by
/// `mmap` and returned to the OS on free, whatever the allocator's dynamic
/// threshold (glibc caps it at 32 MiB), so an idle API shrinks back. Only
/// the blocks in use are ever touched, so the rest costs no memory.
const MIN_CAPACITY_BLOCKS: usize = 33 * 1024;

/// The argon2 working memory of one thread, reused from hash to hash.
#[derive(Default)]
pub(super) struct Memory(Vec<Block>);

impl Memory {
    pub(super) fn blocks(&mut self, n: usize) -> &mut [Block] {
        if self.0.len() < n {
            let mut fresh = Vec::with_capacity(n.max(MIN_CAPACITY_BLOCKS));
            fresh.resize(n, Block::new());
            self.0 = fresh;
        }
        &mut self.0[..n]
    }
}

/// argon2id with `params` into a PHC string, in `memory`.
pub(super) fn hash_with(
    params: &Params,
    secret: &[u8],
    salt: &SaltString,
    memory: &mut Memory,
) -> anyhow::Result<String> {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = salt.as_salt();
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| anyhow::anyhow!("argon2 salt: {e}"))?;
    let mut out = [0u8; 32];
    let len = params.output_len().unwrap_or(out.len()).min(out.len());
    argon
        .hash_password_into_with_memory(
            secret,
            salt_raw,
            &mut out[..len],
            memory.blocks(params.block_count()),
        )
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let output = Output::new(&out[..len]).map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: params
            .try_into()
            .map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?,
        salt: Some(salt),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Recompute `parsed` with its own algorithm, version and parameters for
/// `secret`, in `memory`; constant-time comparison.
pub(super) fn verify_with(parsed: &PasswordHash<'_>, secret: &[u8], memory: &mut Memory) -> bool {
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(parsed) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = [0u8; Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params.clone());
    let blocks = memory.blocks(params.block_count());
    if argon
        .hash_password_into_with_memory(secret, salt_raw, out, blocks)
        .is_err()
    {
        return false;
    }
    Output::new(out).is_ok_and(|computed| computed == expected)
}
