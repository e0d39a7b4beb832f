//! Cutting text to a limit without splitting a character: stored messages (bytes),
//! chat targets (bytes for WeCom, characters for Slack and Discord).

/// `text` cut to at most `max` bytes on a character boundary.
pub fn cut_bytes(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` cut to at most `max` characters.
pub fn cut_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// `text` within `max` bytes, ending in `…` when something was cut.
pub fn shorten_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut out = cut_bytes(text, max.saturating_sub('…'.len_utf8())).to_owned();
    out.push('…');
    out
}

/// `text` within `max` characters, ending in `…` when something was cut.
pub fn shorten_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out = cut_chars(text, max.saturating_sub(1)).to_owned();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_never_split_a_character() {
        let s = "a€b😀"; // 1 + 3 + 1 + 4 bytes
        assert_eq!(cut_bytes(s, 3), "a");
        assert_eq!(cut_bytes(s, 4), "a€");
        assert_eq!(cut_bytes(s, 8), "a€b");
        assert_eq!(cut_bytes(s, 100), s);
        assert_eq!(cut_chars(s, 2), "a€");
        assert_eq!(cut_chars(s, 4), s);
        assert_eq!(cut_chars(s, 0), "");
    }

    #[test]
    fn shortened_text_marks_the_cut_and_keeps_the_limit() {
        let s = "视频已保存".repeat(400); // 3 bytes a character
        let b = shorten_bytes(&s, 4096);
        assert!(b.len() <= 4096 && b.ends_with('…'), "{}", b.len());
        // 4 093 bytes left for text: 1 364 whole characters (4 092 bytes), then `…`.
        assert_eq!(b.len(), 4_095);
        let c = shorten_chars(&s, 150);
        assert_eq!(c.chars().count(), 150);
        assert!(c.ends_with('…'));
        assert_eq!(shorten_chars("short", 150), "short");
        assert_eq!(shorten_bytes("short", 5), "short");
    }
}
