//! A tokenizer for tweets that splits text the way the TwitterAAE authors' tokenizer does.
//!
//! The TwitterAAE model (Blodgett, Green and O'Connor 2016) was estimated on tweets tokenized
//! with twokenize, the ARK Twitter tokenizer, in the Python port shipped with the model
//! (`code/twokenize.py` of slanglab/twitteraae, commit db4d6d1, itself Myle Ott's port of
//! the ARK Java `Twokenize`). This module is an independent Rust implementation of the same
//! rules; each step names the part of `code/twokenize.py` it follows:
//!
//! 1. [`normalize_raw_tweet`]: `normalizeTextForTagger` (`&amp;` to `&`, then Python 2.7's
//!    `HTMLParser.unescape`: `&#NN;`, `&#xNN;` and the HTML 4 named references plus `&apos;`).
//! 2. squeeze whitespace: `squeezeWhitespace` (the `Whitespace` regex, then `strip`).
//! 3. split edge punctuation: `splitEdgePunct` (`EdgePunctLeft` / `EdgePunctRight`).
//! 4. protect spans: `simpleTokenize` with the `Protected` regex (hearts, URLs, e-mail
//!    addresses, times, numbers, emoticons, arrows, entities, punctuation runs, abbreviations,
//!    separators, decorations, words with an inner apostrophe, hashtags, @mentions); the rest
//!    is split on spaces and empty pieces are dropped (`addAllnonempty`).
//!
//! Contractions stay whole (`can't` is one token): `simpleTokenize` leaves the `splitToken`
//! step commented out, and the model's vocabulary has `can't`.
//!
//! Differences from Python 2.7 that only exotic text can show: Rust's regex engine uses the
//! current Unicode tables for `\w`, `\d`, `\b` where Python 2.7 uses Unicode 5.2, and a
//! numeric reference to a lone surrogate (`&#55357;`) becomes U+FFFD (Rust strings cannot
//! hold a lone surrogate; Python keeps it).

use fancy_regex::Regex as FancyRegex;
use regex::Regex;
use std::sync::LazyLock;

/// The characters Python 2.7 counts as whitespace (`unicode.isspace`, the `\s` of a
/// `re.UNICODE` pattern and what `unicode.strip` removes). Rust's `char::is_whitespace`
/// lacks U+001C..U+001F and U+180E, which Python 2.7 (Unicode 5.2) has.
pub fn is_python_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\u{1c}'..='\u{20}'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{180e}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// A regex class body listing [`is_python_space`]'s characters.
const PY_SPACE: &str = r"\t-\r\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{180e}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}";

/// Lower-cases like Python 2.7's `unicode.lower()`: the simple (one-to-one) Unicode mapping,
/// character by character. Rust's `str::to_lowercase` differs in two places: it maps
/// U+0130 (`İ`) to two characters and a word-final `Σ` to `ς`; Python 2.7 gives `i` and `σ`.
pub fn python_lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\u{130}' {
            out.push('i');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Builds the `Protected` pattern of `code/twokenize.py` (the `Protected = re.compile(...)`
/// statement and the definitions above it), in Rust regex syntax with the same alternatives
/// in the same order (the first alternative that matches wins, as in Python's `re`).
fn protected_pattern() -> String {
    fn or(items: &[&str]) -> String {
        format!("(?:{})", items.join("|"))
    }
    // punctChars, entity, punctSeq
    let punct_chars = r#"['"“”‘’.?!…,:;]"#;
    let entity = r"&(?:amp|lt|gt|quot);";
    let punct_seq = r#"['"“”‘’]+|[.?!,…]+|[:;]+"#;
    // URLs: urlStart1, commonTLDs, ccTLDs, urlStart2, urlBody, urlExtraCrapBeforeEnd, urlEnd.
    let url_start1 = r"(?:https?://|\bwww\.)";
    let common_tlds = "(?:com|org|edu|gov|net|mil|aero|asia|biz|cat|coop|info|int|jobs|mobi|museum|name|pro|tel|travel|xxx)";
    let cc_tlds = "(?:ac|ad|ae|af|ag|ai|al|am|an|ao|aq|ar|as|at|au|aw|ax|az|ba|bb|bd|be|bf|bg|bh|bi|bj|bm|bn|bo|br|bs|bt|\
bv|bw|by|bz|ca|cc|cd|cf|cg|ch|ci|ck|cl|cm|cn|co|cr|cs|cu|cv|cx|cy|cz|dd|de|dj|dk|dm|do|dz|ec|ee|eg|eh|\
er|es|et|eu|fi|fj|fk|fm|fo|fr|ga|gb|gd|ge|gf|gg|gh|gi|gl|gm|gn|gp|gq|gr|gs|gt|gu|gw|gy|hk|hm|hn|hr|ht|\
hu|id|ie|il|im|in|io|iq|ir|is|it|je|jm|jo|jp|ke|kg|kh|ki|km|kn|kp|kr|kw|ky|kz|la|lb|lc|li|lk|lr|ls|lt|\
lu|lv|ly|ma|mc|md|me|mg|mh|mk|ml|mm|mn|mo|mp|mq|mr|ms|mt|mu|mv|mw|mx|my|mz|na|nc|ne|nf|ng|ni|nl|no|np|\
nr|nu|nz|om|pa|pe|pf|pg|ph|pk|pl|pm|pn|pr|ps|pt|pw|py|qa|re|ro|rs|ru|rw|sa|sb|sc|sd|se|sg|sh|si|sj|sk|\
sl|sm|sn|so|sr|ss|st|su|sv|sy|sz|tc|td|tf|tg|th|tj|tk|tl|tm|tn|to|tp|tr|tt|tv|tw|tz|ua|ug|uk|us|uy|uz|\
va|vc|ve|vg|vi|vn|vu|wf|ws|ye|yt|za|zm|zw)";
    let url_start2 = format!(
        r"\b(?:[A-Za-z\d\-])+(?:\.[A-Za-z0-9]+){{0,3}}\.{}(?:\.{cc_tlds})?(?=\W|$)",
        or(&[common_tlds, cc_tlds])
    );
    let url_body = r"(?:[^\.\s<>][^\s<>]*?)?";
    let url_extra = format!("{}+?", or(&[punct_chars, entity]));
    let url_end = r"(?:\.\.+|[<>]|\s|$)";
    let url = format!(
        "{}{url_body}(?=(?:{url_extra})?{url_end})",
        or(&[url_start1, &url_start2])
    );
    // Numbers: timeLike, numberWithCommas, numComb.
    let time_like = r"\d+(?::\d+){1,2}";
    let number_with_commas = r"(?:(?<!\d)\d{1,3},)+?\d{3}(?=(?:[^,\d]|$))";
    let num_comb = r"[\$\x{058f}\x{060b}\x{09f2}\x{09f3}\x{09fb}\x{0af1}\x{0bf9}\x{0e3f}\x{17db}\x{a838}\x{fdfc}\x{fe69}\x{ff04}\x{ffe0}\x{ffe1}\x{ffe5}\x{ffe6}\x{00a2}-\x{00a5}\x{20a0}-\x{20b9}]?\d+(?:\.\d+)+%?";
    // Abbreviations: boundaryNotDot, aa1, aa2, standardAbbreviations.
    let boundary_not_dot = or(&["$", r"\s", r#"[“"?!,:;]"#, entity]);
    let aa1 = format!(r"(?:[A-Za-z]\.){{2,}}(?={boundary_not_dot})");
    let aa2 = format!(r"[^A-Za-z](?:[A-Za-z]\.){{1,}}[A-Za-z](?={boundary_not_dot})");
    let standard_abbr = r"\b(?:[Mm]r|[Mm]rs|[Mm]s|[Dd]r|[Ss]r|[Jj]r|[Rr]ep|[Ss]en|[Ss]t)\.";
    let arbitrary_abbrev = or(&[&aa1, &aa2, standard_abbr]);
    let separators = "(?:--+|―|—|~|–|=)";
    let decorations = r"(?:[♫♪]+|[★☆]+|[♥❤♡]+|[\x{2639}-\x{263b}]+|[\x{e001}-\x{ebbb}]+)";
    let things_that_split_words = r#"[^\s\.,?"]"#;
    let embedded_apostrophe = format!("{things_that_split_words}+['’′]{things_that_split_words}*");
    // Emoticons: normalEyes, wink, noseArea, happyMouths, sadMouths, tongue, otherMouths.
    let normal_eyes = "[:=]";
    let wink = "[;]";
    let nose_area = "(?:|-|[^a-zA-Z0-9 ])";
    let happy_mouths = r"[D\)\]\}]+";
    let sad_mouths = r"[\(\[\{]+";
    let tongue = "[pPd3]+";
    let other_mouths = r"(?:[oO]+|[/\\]+|[vV]+|[Ss]+|[|]+)";
    // basicface = bfLeft bfCenter bfRight | s3 | s4 | s5, where bfRight is a back-reference
    // to bfLeft. In Python's combined pattern the copy inside eastEmote is capture group 1
    // (`eastEmote.replace("2", "1", 1)`) and the stand-alone basicface is group 2; the same
    // holds here, as no other alternative before them captures.
    let basicface = |group: u32| {
        format!(
            r#"(?:(♥|0|[oO]|°|[vV]|\$|[tT]|[xX]|;|ಠ|@|ʘ|•|・|◕|\^|¬|\*)(?:[\.]|[_\-]+)\{group})|(?:--['"])|(?:<|&lt;|>|&gt;)[\._\-]+(?:<|&lt;|>|&gt;)|(?:[.][_]+[.])"#
        )
    };
    let ee_left = r"[＼\\ƪԄ\(（<>;ヽ\-=\~\*]+";
    let ee_right = r#"[\-=\);'"<>ʃ）/／ノﾉ丿╯σっµ\~\*]+"#;
    let ee_symbol = r"[^A-Za-z0-9\s\(\)\*:=\-]";
    let east_emote = format!("{ee_left}(?:{}|{ee_symbol})+{ee_right}", basicface(1));
    let o_o_emote = r"(?:[oO](?:[\.]|[_\-]+)[oO])";
    let mouth_end = r"(?=\W|$|RT|rt|Rt)";
    let emoticon = or(&[
        // Standard version :) :( :] :D :P
        &format!(
            "(?:>|&gt;)?{}{}{}",
            or(&[normal_eyes, wink]),
            or(&[nose_area, "[Oo]"]),
            or(&[
                &format!("{tongue}{mouth_end}"),
                &format!("{other_mouths}{mouth_end}"),
                sad_mouths,
                happy_mouths
            ])
        ),
        // Reversed version (: D: after a space or at the start.
        &format!(
            "{}{}{nose_area}{}(?:<|&lt;)?",
            or(&["(?<=(?: ))", "(?<=(?:^))"]),
            or(&[sad_mouths, happy_mouths, other_mouths]),
            or(&[normal_eyes, wink])
        ),
        &east_emote,
        &basicface(2),
        o_o_emote,
    ]);
    let hearts = "(?:<+/?3+)+";
    let arrows = or(&[r"(?:<*[\-―—=]*>+|<+[\-―—=]*>*)", r"[\x{2190}-\x{21ff}]+"]);
    let hashtag = "#[a-zA-Z0-9_]+";
    let at_mention = "[@＠][a-zA-Z0-9_]+";
    let bound = r"(?:\W|^|$)";
    let email = format!(
        r"{}[a-zA-Z0-9._%+\-]+@[a-zA-Z0-9.\-]+\.[a-zA-Z]{{2,4}}(?={bound})",
        or(&[r"(?<=(?:\W))", "(?<=(?:^))"])
    );
    or(&[
        hearts,
        &url,
        &email,
        time_like,
        number_with_commas,
        num_comb,
        &emoticon,
        &arrows,
        entity,
        punct_seq,
        &arbitrary_abbrev,
        separators,
        decorations,
        &embedded_apostrophe,
        hashtag,
        at_mention,
    ])
}

/// The compiled patterns of the tokenizer.
struct Patterns {
    whitespace: Regex,
    edge_left: Regex,
    edge_right: Regex,
    protected: FancyRegex,
    char_ref: Regex,
}

/// Compiled once; the patterns are constants, so a failure is a bug that the unit tests show.
static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    // edgePunctChars, edgePunct, notEdgePunct, offEdge.
    let edge = r#"['"“”‘’«»{}\(\)\[\]\*\&]"#;
    let not_edge = "[a-zA-Z0-9]";
    let off_edge = r"(^|$|:|;|\s|\.|,)";
    Patterns {
        // Whitespace: `[\s\u0020\u00a0\u1680\u180e\u202f\u205f\u3000\u2000-\u200a]+`.
        whitespace: Regex::new(&format!("[{PY_SPACE}]+")).expect("whitespace pattern"),
        edge_left: Regex::new(&format!("{off_edge}({edge}+)({not_edge})")).expect("edge pattern"),
        edge_right: Regex::new(&format!("({not_edge})({edge}+){off_edge}")).expect("edge pattern"),
        protected: FancyRegex::new(&protected_pattern()).expect("protected pattern"),
        // Python 2.7 HTMLParser.unescape: `&(#?[xX]?(?:[0-9a-fA-F]+|\w{1,8}));`, with an
        // ASCII `\w` (the pattern has no re.UNICODE flag).
        char_ref: Regex::new(r"&(#?[xX]?(?:[0-9a-fA-F]+|[0-9A-Za-z_]{1,8}));")
            .expect("char ref pattern"),
    }
});

/// Prepares raw tweet text as `normalizeTextForTagger` does: every `&amp;` becomes `&`
/// (tweets are sometimes escaped twice), then character references are decoded as Python
/// 2.7's `HTMLParser.unescape` decodes them (`&#NN;`, `&#xNN;`, HTML 4 names and `&apos;`;
/// anything else is left as it is).
pub fn normalize_raw_tweet(text: &str) -> String {
    let text = text.replace("&amp;", "&");
    if !text.contains('&') {
        return text;
    }
    PATTERNS
        .char_ref
        .replace_all(&text, |caps: &regex::Captures<'_>| {
            let whole = &caps[0];
            let body = &caps[1];
            decode_reference(body).unwrap_or_else(|| whole.to_string())
        })
        .into_owned()
}

/// One reference body (between `&` and `;`) as HTMLParser.unescape's `replaceEntities`
/// decodes it, or `None` where it leaves the text unchanged.
fn decode_reference(body: &str) -> Option<String> {
    if let Some(num) = body.strip_prefix('#') {
        // `int(s[1:], 16)` after an x, else `int(s)`; `unichr` fails above U+10FFFF.
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        if code > 0x10ffff {
            return None;
        }
        return Some(char::from_u32(code).unwrap_or('\u{fffd}').to_string());
    }
    crate::entities::HTML_ENTITIES
        .binary_search_by(|(name, _)| (*name).cmp(body))
        .ok()
        .map(|i| crate::entities::HTML_ENTITIES[i].1.to_string())
}

/// `squeezeWhitespace`: runs of whitespace become one space; the ends are stripped.
fn squeeze_whitespace(text: &str) -> String {
    PATTERNS
        .whitespace
        .replace_all(text, " ")
        .trim_matches(is_python_space)
        .to_string()
}

/// `splitEdgePunct`: quotes, brackets and the like at the edge of a word get a space
/// between them and the word (`'foo'` becomes `' foo '`, `don't` stays).
fn split_edge_punct(text: &str) -> String {
    let left = PATTERNS.edge_left.replace_all(text, "${1}${2} ${3}");
    PATTERNS
        .edge_right
        .replace_all(&left, "${1} ${2}${3}")
        .into_owned()
}

/// Appends the pieces of `s` split on spaces, stripped, empty ones dropped (`addAllnonempty`).
fn push_split(tokens: &mut Vec<String>, s: &str) {
    for piece in s.split(' ') {
        let piece = piece.trim_matches(is_python_space);
        if !piece.is_empty() {
            tokens.push(piece.to_string());
        }
    }
}

/// Tokenizes text that has no HTML escaping, as `tokenize` in `code/twokenize.py` does:
/// `simpleTokenize(squeezeWhitespace(text))`.
///
/// ```
/// use detox_dialect::twokenize::tokenize;
/// assert_eq!(tokenize("lol!!! can't :) #tbt @you"), ["lol", "!!!", "can't", ":)", "#tbt", "@you"]);
/// ```
pub fn tokenize(text: &str) -> Vec<String> {
    let text = split_edge_punct(&squeeze_whitespace(text));
    // simpleTokenize: the spans the Protected pattern finds are tokens as they are; the
    // text between them is split on spaces.
    let mut tokens = Vec::new();
    let mut last = 0;
    for found in PATTERNS.protected.find_iter(&text) {
        let m = match found {
            Ok(m) => m,
            Err(e) => {
                // Only the backtracking limit can stop the search; the rest of the text is
                // then split on spaces alone.
                tracing::warn!("twokenize: protected-span search stopped: {e}");
                break;
            }
        };
        if m.start() == m.end() {
            continue;
        }
        push_split(&mut tokens, &text[last..m.start()]);
        let bad = m.as_str().trim_matches(is_python_space);
        if !bad.is_empty() {
            tokens.push(bad.to_string());
        }
        last = m.end();
    }
    push_split(&mut tokens, &text[last..]);
    tokens
}

/// Tokenizes raw tweet text (HTML-escaped, as Twitter delivers it and as data sets such as
/// Davidson et al.'s store it): `tokenizeRawTweetText`, i.e. [`normalize_raw_tweet`] then
/// [`tokenize`]. This is what [`crate::DialectModel::infer`] uses.
pub fn tokenize_raw_tweet(text: &str) -> Vec<String> {
    tokenize(&normalize_raw_tweet(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        tokenize(s)
    }

    #[test]
    fn patterns_compile() {
        let _ = &PATTERNS.protected;
    }

    #[test]
    fn urls_stay_whole() {
        assert_eq!(
            toks("check this http://t.co/AbC123 out!!"),
            ["check", "this", "http://t.co/AbC123", "out", "!!"]
        );
        assert_eq!(
            toks("go to www.example.com/a?b=1."),
            ["go", "to", "www.example.com/a?b=1", "."]
        );
        // The optional URL body is greedy, so a trailing comma before a space joins the URL
        // (as with the authors' tokenizer).
        assert_eq!(toks("see google.com, now"), ["see", "google.com,", "now"]);
    }

    #[test]
    fn emoticons() {
        assert_eq!(toks("hi :) bye :-( ok"), ["hi", ":)", "bye", ":-(", "ok"]);
        assert_eq!(toks(":D lol"), [":D", "lol"]);
        assert_eq!(toks("(: yes"), ["(:", "yes"]);
        assert_eq!(toks("o.O what"), ["o.O", "what"]);
        assert_eq!(toks("^_^ nice"), ["^_^", "nice"]);
        assert_eq!(toks("love <3 u"), ["love", "<3", "u"]);
        // Attached to words, emoticons are cut off whole (expected tokens from the authors'
        // twokenize.py).
        assert_eq!(
            toks("haha:) ok:( yes!!!:D love<3 wait:-P"),
            ["haha", ":)", "ok", ":(", "yes", "!!!", ":D", "love", "<3", "wait", ":-P"]
        );
        assert_eq!(
            toks("lol;) bye:P hey=]"),
            ["lol", ";)", "bye", ":P", "hey", "=]"]
        );
    }

    #[test]
    fn mentions_hashtags_and_edges() {
        assert_eq!(
            toks("@bestie_1 lol (#tbt) @you:"),
            ["@bestie_1", "lol", "(", "#tbt", ")", "@you", ":"]
        );
        assert_eq!(toks("\"quoted\" word"), ["\"", "quoted", "\"", "word"]);
    }

    #[test]
    fn contractions_and_punctuation_runs() {
        assert_eq!(
            toks("I can't believe it lol!!!"),
            ["I", "can't", "believe", "it", "lol", "!!!"]
        );
        assert_eq!(toks("wait... what?!"), ["wait", "...", "what", "?!"]);
        assert_eq!(toks("she ain’t here"), ["she", "ain’t", "here"]);
    }

    #[test]
    fn numbers_times_abbreviations() {
        assert_eq!(
            toks("at 12:30 I paid $5.99 for 1,000 U.S. things"),
            ["at", "12:30", "I", "paid", "$5.99", "for", "1,000", "U.S.", "things"]
        );
        assert_eq!(toks("Mr. Smith"), ["Mr.", "Smith"]);
        assert_eq!(
            toks("cost:$5.99! it was 1,000,000people at12:30"),
            [
                "cost",
                ":",
                "$5.99",
                "!",
                "it",
                "was",
                "1,000,000",
                "people",
                "at",
                "12:30"
            ]
        );
        assert_eq!(toks("pay $3.50."), ["pay", "$3.50", "."]);
        assert_eq!(toks("v2.0.1 rocks"), ["v", "2.0.1", "rocks"]);
        assert_eq!(toks("me@example.com wrote"), ["me@example.com", "wrote"]);
    }

    #[test]
    fn unicode_and_whitespace() {
        assert_eq!(
            toks("  qué   pasa\u{a0}amigo 😂😂 "),
            ["qué", "pasa", "amigo", "😂😂"]
        );
        assert_eq!(toks("♥♥ yes ★"), ["♥♥", "yes", "★"]);
        assert!(toks(" \t\n").is_empty());
    }

    #[test]
    fn raw_tweets_are_unescaped() {
        assert_eq!(
            normalize_raw_tweet(
                "a &amp;amp; b &#8220;hi&#8221; &lt;3 &apos; &#x41; &bogus; &#99999999;"
            ),
            "a & b \u{201c}hi\u{201d} <3 ' A &bogus; &#99999999;"
        );
        assert_eq!(
            tokenize_raw_tweet("&#8220;@user: u a fool&#8221; &lt;3"),
            ["\u{201c}", "@user", ":", "u", "a", "fool", "\u{201d}", "<3"]
        );
    }

    #[test]
    fn lowercase_like_python2() {
        assert_eq!(python_lower("İSTANBUL ΣΑΣ"), "istanbul σασ");
        assert_eq!(python_lower("LOL"), "lol");
    }
}
