//! Random SQL-ish byte strings for the scanner's property tests.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `count` strings of up to `max_len` bytes, reproducible from `seed`: mostly bytes of
/// `alphabet` (7 in 10 as given, 2 in 10 upper-cased) and 1 in 10 arbitrary, so that keywords,
/// quotes and comment markers collide with case variants and invalid UTF-8.
pub(super) fn random_texts(
    seed: u64,
    alphabet: &'static [u8],
    max_len: usize,
    count: usize,
) -> impl Iterator<Item = Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count).map(move |_| {
        let len = rng.random_range(0..=max_len);
        (0..len)
            .map(|_| {
                let b = alphabet[rng.random_range(0..alphabet.len())];
                match rng.random_range(0..10) {
                    0 => rng.random(),
                    1..=2 => b.to_ascii_uppercase(),
                    _ => b,
                }
            })
            .collect()
    })
}
