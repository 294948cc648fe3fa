//! Server-made identifiers and secrets: short random ids with a type prefix, and bearer tokens.

use std::cell::RefCell;

/// Random bytes per thread drawn from the OS at a time for ids (see [`new_id`]).
const ID_POOL_BYTES: usize = 320;

/// Bytes of randomness in an id.
const ID_BYTES: usize = 10;

/// A random id such as `u_3f9a0c1b2d4e5f60a1b2`: a type prefix, then 80 random bits in hex.
/// Collisions are not a practical concern at that size for users, rooms, messages and connections.
///
/// The bits come from the OS's random source, drawn 320 bytes at a time per thread: every
/// stored message gets an id, and one `getrandom` system call per id was a measurable part of a
/// direct message's CPU on the SQLite writer thread. Ids are not secrets (bearer tokens, which
/// are, take theirs directly: [`new_token`]).
pub fn new_id(prefix: &str) -> String {
    let mut b = [0u8; ID_BYTES];
    pooled_random(&mut b);
    let mut hex = [0u8; 2 * ID_BYTES];
    hex::encode_to_slice(b, &mut hex).expect("twice the bytes' length");
    let mut id = String::with_capacity(prefix.len() + 1 + hex.len());
    id.push_str(prefix);
    id.push('_');
    id.push_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"));
    id
}

/// Fills `out` (at most [`ID_POOL_BYTES`]) from this thread's pool of OS randomness, drawing a
/// new pool when the rest is too short. Bytes handed out are zeroed in the pool, so none is
/// handed out twice.
fn pooled_random(out: &mut [u8]) {
    thread_local! {
        static POOL: RefCell<([u8; ID_POOL_BYTES], usize)> =
            const { RefCell::new(([0; ID_POOL_BYTES], ID_POOL_BYTES)) };
    }
    POOL.with(|pool| {
        let (bytes, used) = &mut *pool.borrow_mut();
        if ID_POOL_BYTES - *used < out.len() {
            getrandom::fill(bytes).expect("the OS random source failed");
            *used = 0;
        }
        let taken = &mut bytes[*used..*used + out.len()];
        out.copy_from_slice(taken);
        taken.fill(0);
        *used += out.len();
    });
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn an_id_is_its_prefix_and_twenty_hex_digits() {
        for prefix in ["m", "u", "room"] {
            let id = new_id(prefix);
            let (p, hex) = id.split_once('_').unwrap();
            assert_eq!(p, prefix);
            assert_eq!(hex.len(), 20);
            assert!(
                hex.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
        }
    }

    #[test]
    fn ids_do_not_repeat_across_pool_refills_and_threads() {
        // Many pools' worth on each of several threads: a pool reused or shared would repeat.
        let per_thread = 20 * ID_POOL_BYTES / ID_BYTES;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || (0..per_thread).map(|_| new_id("m")).collect::<Vec<_>>())
            })
            .collect();
        let mut seen = HashSet::new();
        for t in threads {
            for id in t.join().unwrap() {
                assert!(seen.insert(id), "an id repeated");
            }
        }
        assert_eq!(seen.len(), 4 * per_thread);
    }

    #[test]
    fn the_pool_hands_out_every_byte_once_and_refills_when_short() {
        // Draws that do not divide the pool evenly: the short rest is dropped, not reused.
        let mut all = Vec::new();
        for _ in 0..3 * ID_POOL_BYTES / 7 {
            let mut b = [0u8; 7];
            pooled_random(&mut b);
            all.extend_from_slice(&b);
        }
        // Random bytes: all-zero 7-byte draws (what a handed-out, zeroed slot holds) would mean
        // a slot was handed out twice.
        assert!(all.chunks(7).all(|c| c.iter().any(|&x| x != 0)));
    }
}
