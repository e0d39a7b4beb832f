//! A deterministic "video": a valid `ftyp` header, then pseudo-random bytes generated
//! from (seed, offset), so gigabytes cost no memory and any range can be produced.

use sha2::{Digest, Sha256};

/// A deterministic video: a valid `ftyp` header, then pseudo-random bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Video {
    pub len: u64,
    pub seed: u64,
}

const FTYP: [u8; 32] = [
    0, 0, 0, 0x20, b'f', b't', b'y', b'p', b'i', b's', b'o', b'm', 0, 0, 2, 0, b'i', b's', b'o',
    b'm', b'i', b's', b'o', b'2', b'a', b'v', b'c', b'1', b'm', b'p', b'4', b'1',
];

impl Video {
    pub fn new(len: u64, seed: u64) -> Self {
        Self { len, seed }
    }

    /// Writes bytes `[start, start + out.len())` into `out`.
    pub fn fill(&self, start: u64, out: &mut [u8]) {
        let mut pos = start;
        let mut rest = out;
        while !rest.is_empty() {
            let n = if pos < FTYP.len() as u64 {
                let from = pos as usize;
                let n = rest.len().min(FTYP.len() - from);
                rest[..n].copy_from_slice(&FTYP[from..from + n]);
                n
            } else {
                // One splitmix64 word per 8 bytes of content.
                let word = self.word(pos / 8).to_le_bytes();
                let from = (pos % 8) as usize;
                let n = rest.len().min(8 - from);
                rest[..n].copy_from_slice(&word[from..from + n]);
                n
            };
            pos += n as u64;
            rest = &mut rest[n..];
        }
    }

    fn word(&self, index: u64) -> u64 {
        let mut z = self
            .seed
            .wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The whole content (for small videos in tests).
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = vec![0; usize::try_from(self.len).expect("small video")];
        self.fill(0, &mut v);
        v
    }

    /// Lowercase hex SHA-256 of the whole content, computed in 1 MiB blocks.
    pub fn sha256(&self) -> String {
        let mut hasher = Sha256::new();
        let mut block = vec![0u8; 1 << 20];
        let mut pos = 0;
        while pos < self.len {
            let n = (self.len - pos).min(block.len() as u64) as usize;
            self.fill(pos, &mut block[..n]);
            hasher.update(&block[..n]);
            pos += n as u64;
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_deterministic_and_starts_with_ftyp() {
        let v = Video::new(1000, 7);
        let all = v.bytes();
        assert_eq!(&all[4..8], b"ftyp");
        let mut part = vec![0; 100];
        v.fill(450, &mut part);
        assert_eq!(&all[450..550], &part[..]);
        assert_ne!(Video::new(1000, 8).bytes(), all);
        assert_eq!(v.sha256().len(), 64);
    }
}
