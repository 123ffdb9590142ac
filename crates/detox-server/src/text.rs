//! Text helpers for the Perspective endpoint: a script-based language guess and sentence spans
//! with UTF-16 offsets (Perspective's `begin`/`end` count UTF-16 code units, as JavaScript does).

/// Guesses a language code from the dominant script: `zh`, `ja`, `ko`, `ar`, `ru`, `he`, `hi`,
/// `el`, `th`, else `en` for Latin text (Latin languages are not told apart).
pub fn detect_language(text: &str) -> &'static str {
    let mut counts = [0usize; 10];
    for c in text.chars() {
        let u = c as u32;
        let i = match u {
            0x3040..=0x30FF => 1,                   // kana
            0x4E00..=0x9FFF | 0x3400..=0x4DBF => 0, // CJK ideographs
            0xAC00..=0xD7AF | 0x1100..=0x11FF => 2, // Hangul
            0x0600..=0x06FF | 0x0750..=0x077F => 3, // Arabic
            0x0400..=0x04FF => 4,                   // Cyrillic
            0x0590..=0x05FF => 5,                   // Hebrew
            0x0900..=0x097F => 6,                   // Devanagari
            0x0370..=0x03FF => 7,                   // Greek
            0x0E00..=0x0E7F => 8,                   // Thai
            _ if c.is_alphabetic() => 9,            // Latin and the rest
            _ => continue,
        };
        counts[i] += 1;
    }
    // Kana anywhere means Japanese even when kanji dominate.
    if counts[1] > 0 && counts[1] * 5 >= counts[0] {
        return "ja";
    }
    let (best, n) = counts
        .iter()
        .enumerate()
        .max_by_key(|(_, n)| **n)
        .map(|(i, n)| (i, *n))
        .unwrap_or((9, 0));
    if n == 0 {
        return "en";
    }
    ["zh", "ja", "ko", "ar", "ru", "he", "hi", "el", "th", "en"][best]
}

/// A sentence: its text and UTF-16 `[begin, end)` offsets in the comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The sentence text (whitespace-trimmed).
    pub text: String,
    /// Start, in UTF-16 code units.
    pub begin: usize,
    /// End (exclusive), in UTF-16 code units.
    pub end: usize,
}

/// Splits a comment into sentences: after `.`, `!`, `?` (and their CJK forms) followed by
/// whitespace or the end, and at line breaks. Empty pieces are dropped.
pub fn sentences(text: &str) -> Vec<Span> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut start = 0usize; // byte offset
    let mut i = 0;
    let push = |out: &mut Vec<Span>, from: usize, to: usize| {
        let piece = &text[from..to];
        let lead = piece.len() - piece.trim_start().len();
        let trimmed = piece.trim();
        if trimmed.is_empty() {
            return;
        }
        let b = from + lead;
        let e = b + trimmed.len();
        out.push(Span {
            text: trimmed.to_string(),
            begin: text[..b].encode_utf16().count(),
            end: text[..e].encode_utf16().count(),
        });
    };
    while i < chars.len() {
        let (pos, c) = chars[i];
        let end_here = match c {
            '\n' => Some(pos),
            '.' | '!' | '?' => {
                // Swallow runs like "?!" or "...", then require whitespace or the end.
                let mut j = i;
                while j + 1 < chars.len() && matches!(chars[j + 1].1, '.' | '!' | '?') {
                    j += 1;
                }
                let after = chars.get(j + 1).map(|x| x.1);
                if after.is_none() || after.is_some_and(char::is_whitespace) {
                    i = j;
                    Some(chars[j].0 + chars[j].1.len_utf8())
                } else {
                    None
                }
            }
            '。' | '！' | '？' => Some(pos + c.len_utf8()),
            _ => None,
        };
        if let Some(e) = end_here {
            push(&mut out, start, e);
            start = e;
        }
        i += 1;
    }
    push(&mut out, start, text.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_by_script() {
        assert_eq!(detect_language("hello there"), "en");
        assert_eq!(detect_language("你好，世界"), "zh");
        assert_eq!(detect_language("こんにちは世界"), "ja");
        assert_eq!(detect_language("مرحبا بالعالم"), "ar");
        assert_eq!(detect_language("Привет мир"), "ru");
        assert_eq!(detect_language("123 !!"), "en");
    }

    #[test]
    fn sentence_offsets_count_utf16_units() {
        let t = "You are great. 😀 You are an idiot!  Third one...\nlast";
        let s = sentences(t);
        let texts: Vec<&str> = s.iter().map(|x| x.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "You are great.",
                "😀 You are an idiot!",
                "Third one...",
                "last"
            ]
        );
        assert_eq!((s[0].begin, s[0].end), (0, 14));
        // The emoji is two UTF-16 units.
        assert_eq!(s[1].begin, 15);
        assert_eq!(s[1].end, 15 + 2 + " You are an idiot!".len());
        let utf16: Vec<u16> = t.encode_utf16().collect();
        for sp in &s {
            assert_eq!(
                String::from_utf16(&utf16[sp.begin..sp.end]).unwrap(),
                sp.text
            );
        }
        assert_eq!(
            sentences("e.g. 3.5 works").len(),
            2,
            "a period inside a word is no end, one before a space is"
        );
        assert!(sentences("   ").is_empty());
    }
}
