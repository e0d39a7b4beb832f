//! Is it an MP4? An ISO-BMFF file starts with an `ftyp` box: 4-byte big-endian size,
//! the ASCII type `ftyp`, then a 4-character major brand. An HTML error page, a JSON
//! error, or anything else fails here, before a byte is stored (content types that are
//! never a video are refused earlier, by the HTTP source).

/// Bytes needed to decide.
pub const SNIFF_LEN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// An `ftyp` box with this major brand (`isom`, `mp42`, …).
    Mp4 {
        brand: [u8; 4],
    },
    NotMp4,
    /// Fewer than [`SNIFF_LEN`] bytes so far.
    NeedMore,
}

/// Judges the first bytes of a stream. `at_end` says the stream has no more bytes.
pub fn sniff_mp4(prefix: &[u8], at_end: bool) -> Sniff {
    if prefix.len() < SNIFF_LEN {
        return if at_end {
            Sniff::NotMp4
        } else {
            Sniff::NeedMore
        };
    }
    let size = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    // 1 means a 64-bit size follows; otherwise the box must at least hold size, type,
    // major brand and minor version (16 bytes).
    let size_ok = size == 1 || size >= 16;
    let brand = [prefix[8], prefix[9], prefix[10], prefix[11]];
    if size_ok && &prefix[4..8] == b"ftyp" && brand.iter().all(|b| (0x20..0x7f).contains(b)) {
        Sniff::Mp4 { brand }
    } else {
        Sniff::NotMp4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ftyp(size: u32, kind: &[u8; 4], brand: &[u8; 4]) -> Vec<u8> {
        let mut v = size.to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(brand);
        v.extend_from_slice(&[0, 0, 2, 0]);
        v
    }

    #[test]
    fn real_mp4_headers() {
        assert_eq!(
            sniff_mp4(&ftyp(0x18, b"ftyp", b"isom"), false),
            Sniff::Mp4 { brand: *b"isom" }
        );
        assert_eq!(
            sniff_mp4(&ftyp(0x20, b"ftyp", b"mp42"), false),
            Sniff::Mp4 { brand: *b"mp42" }
        );
        assert_eq!(
            sniff_mp4(&ftyp(1, b"ftyp", b"iso6"), false),
            Sniff::Mp4 { brand: *b"iso6" }
        );
        assert_eq!(
            sniff_mp4(&ftyp(0x1c, b"ftyp", b"M4V "), false),
            Sniff::Mp4 { brand: *b"M4V " }
        );
    }

    #[test]
    fn everything_else_is_refused() {
        assert_eq!(sniff_mp4(b"<!DOCTYPE html><html>", false), Sniff::NotMp4);
        assert_eq!(sniff_mp4(b"{\"error\":\"expired\"}", false), Sniff::NotMp4);
        assert_eq!(
            sniff_mp4(b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\xf7\x81", false),
            Sniff::NotMp4,
            "webm"
        );
        assert_eq!(
            sniff_mp4(&ftyp(0x18, b"moov", b"isom"), false),
            Sniff::NotMp4
        );
        assert_eq!(
            sniff_mp4(&ftyp(8, b"ftyp", b"isom"), false),
            Sniff::NotMp4,
            "box too small"
        );
        assert_eq!(
            sniff_mp4(&ftyp(0x18, b"ftyp", &[0, 1, 2, 3]), false),
            Sniff::NotMp4,
            "binary brand"
        );
    }

    #[test]
    fn short_prefixes_wait_or_fail_at_end() {
        assert_eq!(sniff_mp4(b"\0\0\0\x18ftyp", false), Sniff::NeedMore);
        assert_eq!(sniff_mp4(b"\0\0\0\x18ftyp", true), Sniff::NotMp4);
        assert_eq!(sniff_mp4(b"", true), Sniff::NotMp4);
    }
}
