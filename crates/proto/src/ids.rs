//! Server-made identifiers and secrets: short random ids with a type prefix, and bearer tokens.

/// A random id such as `u_3f9a0c1b2d4e5f60a1b2`: a type prefix, then 80 random bits in hex.
/// Collisions are not a practical concern at that size for users, rooms, messages and connections.
pub fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 10];
    getrandom::fill(&mut b).expect("the OS random source failed");
    format!("{prefix}_{}", hex::encode(b))
}

/// A bearer token: 256 random bits, hex encoded. Only its SHA-256 is stored.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS random source failed");
    format!("sb_{}", hex::encode(b))
}

/// A random u64, for jitter and epochs.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source failed");
    u64::from_le_bytes(b)
}
