//! The two hashes of spaCy's feature pipeline: spaCy's string hash (MurmurHash64A, seed 1,
//! over the UTF-8 bytes) and thinc's `hash` of a 64-bit key (MurmurHash3 x64 128, giving four
//! 32-bit row indices per key in HashEmbed).

/// spaCy's `hash_string`: MurmurHash64A of the UTF-8 bytes with seed 1.
pub fn hash_string(text: &str) -> u64 {
    murmur64a(text.as_bytes(), 1)
}

fn murmur64a(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (data.len() as u64).wrapping_mul(M);
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let mut k = u64::from_le_bytes(word);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate() {
            h ^= u64::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// thinc's `hash(ids, seed)` for one 64-bit key: MurmurHash3_x64_128 of the key's 8 bytes,
/// read as four little-endian 32-bit words.
pub fn hash_key(key: u64, seed: u32) -> [u32; 4] {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let seed = u64::from(seed);
    let mut h1 = seed;
    let mut h2 = seed;
    let mut k1 = key.wrapping_mul(C1);
    k1 = k1.rotate_left(31);
    k1 = k1.wrapping_mul(C2);
    h1 ^= k1;
    h1 ^= 8;
    h2 ^= 8;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    [h1 as u32, (h1 >> 32) as u32, h2 as u32, (h2 >> 32) as u32]
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values from Python: `spacy.strings.hash_string(s)` and thinc's
    // `NumpyOps().hash(numpy.array([key], dtype="uint64"), seed)`.
    #[test]
    fn string_hash_matches_spacy() {
        assert_eq!(hash_string("noun"), 16833663260455505849);
        assert_eq!(hash_string("école"), 8656209310663779362);
        assert_eq!(hash_string(""), 14313749767032693980);
        assert_eq!(hash_string("L'"), 7927797470563099839);
        assert_eq!(hash_string(&"a".repeat(40)), 10820722338858105277);
    }

    #[test]
    fn key_hash_matches_thinc() {
        assert_eq!(hash_key(8656209310663779362, 8), [4004478248, 3755092486, 1711750076, 1337671434]);
        assert_eq!(hash_key(1, 12), [2938686206, 2291508213, 2246688320, 3554967022]);
    }
}
