//! The text vectorizer: the exact tokenization and vocabulary used in training, stored in the
//! bundle so that scoring rebuilds the same input vector (the old pipeline had to rebuild its
//! vectorizer by hand from the training dataframe).

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How a product's text becomes the model's text input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextSpec {
    /// Lower-case before looking tokens up.
    pub lowercase: bool,
    /// Tokens are maximal runs of alphanumeric characters at least this long.
    pub min_token_chars: usize,
    /// 1 = words only, 2 = words and pairs of adjacent words.
    pub max_ngram: usize,
    /// Character n-grams of each word as extra terms (absent in bundles made before they
    /// existed: words only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub char_ngrams: Option<CharNgrams>,
    /// `multi_hot` (1.0 when a term occurs) or `counts` (occurrences).
    pub encoding: TextEncoding,
    /// A title or description longer than this (in bytes) is refused for that row instead of
    /// being silently cut.
    pub max_field_bytes: usize,
    /// Term of each input position, in input order.
    pub vocabulary: Vec<String>,
}

/// Character n-grams of `min..=max` characters of each word framed as `<word>`, kept in the
/// vocabulary as `#` + n-gram (`#<sh`, `#shi`, `#rt>`), so that they never collide with a word
/// and the frame tells a prefix or suffix from the middle of a word. They let a title's unseen
/// spellings ("tshirt", "t-shirts", "sweatshirt") share terms with the ones seen in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharNgrams {
    pub min: usize,
    pub max: usize,
}

impl CharNgrams {
    /// The longest n-gram a vectorizer accepts.
    pub const MAX_CHARS: usize = 8;

    pub fn validate(self) -> Result<Self> {
        if self.min == 0 || self.min > self.max || self.max > Self::MAX_CHARS {
            return Err(Error::Vectorizer(format!(
                "character n-grams must satisfy 1 <= min <= max <= {}, not {}-{}",
                Self::MAX_CHARS,
                self.min,
                self.max
            )));
        }
        Ok(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextEncoding {
    MultiHot,
    Counts,
}

impl TextSpec {
    /// The defaults used by lakecat's trainers, with an empty vocabulary.
    pub fn with_defaults() -> Self {
        Self {
            lowercase: true,
            min_token_chars: 2,
            max_ngram: 1,
            char_ngrams: None,
            encoding: TextEncoding::MultiHot,
            max_field_bytes: 64 * 1024,
            vocabulary: Vec::new(),
        }
    }
}

/// Why a row's text could not be vectorized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("{field} is {len} bytes, over the limit of {limit} bytes")]
    TooLong { field: &'static str, len: usize, limit: usize },
    #[error("{field} is not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { field: &'static str, offset: usize },
}

/// A [`TextSpec`] with its vocabulary indexed for lookups.
#[derive(Debug, Clone, PartialEq)]
pub struct TextVectorizer {
    spec: TextSpec,
    /// Term → input position; Fx hashing, because scoring looks up every word of every row.
    index: FxHashMap<String, u32>,
}

impl TextVectorizer {
    pub fn new(spec: TextSpec) -> Result<Self> {
        if spec.max_ngram == 0 || spec.max_ngram > 2 {
            return Err(Error::Vectorizer(format!("max_ngram must be 1 or 2, not {}", spec.max_ngram)));
        }
        if let Some(char_ngrams) = spec.char_ngrams {
            char_ngrams.validate()?;
        }
        let mut index = FxHashMap::with_capacity_and_hasher(spec.vocabulary.len(), Default::default());
        for (position, term) in spec.vocabulary.iter().enumerate() {
            if index.insert(term.clone(), position as u32).is_some() {
                return Err(Error::Vectorizer(format!("the term {term:?} appears twice in the vocabulary")));
            }
        }
        Ok(Self { spec, index })
    }

    /// Learns a vocabulary from training texts: terms found in at least `min_document_count`
    /// texts, the `max_terms` most frequent kept (ties broken alphabetically, so the result is
    /// deterministic).
    pub fn fit<'a>(
        settings: TextSpec,
        texts: impl IntoIterator<Item = &'a str>,
        min_document_count: usize,
        max_terms: usize,
    ) -> Result<Self> {
        let mut document_counts: HashMap<String, usize> = HashMap::new();
        let mut terms = Vec::new();
        for text in texts {
            terms.clear();
            tokenize(&settings, text, &mut terms);
            terms.sort_unstable();
            terms.dedup();
            for term in &terms {
                *document_counts.entry(term.clone()).or_default() += 1;
            }
        }
        let mut ranked: Vec<(String, usize)> =
            document_counts.into_iter().filter(|(_, count)| *count >= min_document_count).collect();
        ranked.sort_by(|(a_term, a_count), (b_term, b_count)| b_count.cmp(a_count).then(a_term.cmp(b_term)));
        ranked.truncate(max_terms);
        let mut vocabulary: Vec<String> = ranked.into_iter().map(|(term, _)| term).collect();
        vocabulary.sort();
        Self::new(TextSpec { vocabulary, ..settings })
    }

    pub fn spec(&self) -> &TextSpec {
        &self.spec
    }

    /// Length of the text input vector.
    pub fn dim(&self) -> usize {
        self.spec.vocabulary.len()
    }

    /// The terms of `text` as the vectorizer sees them (lower-cased words, then word pairs, then
    /// character n-grams).
    pub fn terms(&self, text: &str) -> Vec<String> {
        let mut terms = Vec::new();
        tokenize(&self.spec, text, &mut terms);
        terms
    }

    /// Checks one field against the size limit.
    pub fn check_field(&self, field: &'static str, text: &str) -> Result<(), TextError> {
        if text.len() > self.spec.max_field_bytes {
            return Err(TextError::TooLong { field, len: text.len(), limit: self.spec.max_field_bytes });
        }
        Ok(())
    }

    /// Writes the vector of title + description into `out` (length [`Self::dim`]), which must be
    /// zeroed. NULL fields contribute nothing.
    pub fn encode_into(
        &self,
        title: Option<&str>,
        description: Option<&str>,
        out: &mut [f32],
    ) -> Result<(), TextError> {
        debug_assert_eq!(out.len(), self.dim());
        // Both fields are checked before any term is written: a refused row leaves `out` zeroed.
        for (field, text) in [("title", title), ("description", description)] {
            if let Some(text) = text {
                self.check_field(field, text)?;
            }
        }
        let mut scratch = Scratch::default();
        for text in [title, description].into_iter().flatten() {
            for_each_term(&self.spec, text, &mut scratch, |term| {
                if let Some(&position) = self.index.get(term) {
                    let slot = &mut out[position as usize];
                    match self.spec.encoding {
                        TextEncoding::MultiHot => *slot = 1.0,
                        TextEncoding::Counts => *slot += 1.0,
                    }
                }
            });
        }
        Ok(())
    }
}

/// Appends the terms of `text` to `terms`.
fn tokenize(spec: &TextSpec, text: &str, terms: &mut Vec<String>) {
    for_each_term(spec, text, &mut Scratch::default(), |term| terms.push(term.to_string()));
}

/// Buffers reused across the words of a text, so that scoring allocates per row, not per term.
#[derive(Default)]
struct Scratch {
    /// The words, as looked up, back to back.
    words: String,
    bounds: Vec<std::ops::Range<usize>>,
    /// The term being built: a word pair or a character n-gram.
    pair: String,
    /// The word being cut into character n-grams, framed as `<word>`.
    framed: String,
    /// Byte offset of each character of `framed`, and its end.
    char_starts: Vec<usize>,
}

/// Calls `visit` with each term of `text`: its words (maximal alphanumeric runs of at least
/// `min_token_chars` characters, lower-cased if asked), then each pair of adjacent words, then
/// the character n-grams of each word ([`CharNgrams`]).
fn for_each_term(spec: &TextSpec, text: &str, scratch: &mut Scratch, mut visit: impl FnMut(&str)) {
    scratch.words.clear();
    scratch.bounds.clear();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.chars().count() < spec.min_token_chars {
            continue;
        }
        let start = scratch.words.len();
        if spec.lowercase && !word.is_ascii() {
            scratch.words.push_str(&word.to_lowercase());
        } else {
            scratch.words.push_str(word);
            if spec.lowercase {
                scratch.words[start..].make_ascii_lowercase();
            }
        }
        scratch.bounds.push(start..scratch.words.len());
        visit(&scratch.words[start..]);
    }
    if spec.max_ngram == 2 {
        for adjacent in scratch.bounds.windows(2) {
            scratch.pair.clear();
            scratch.pair.push_str(&scratch.words[adjacent[0].clone()]);
            scratch.pair.push(' ');
            scratch.pair.push_str(&scratch.words[adjacent[1].clone()]);
            visit(&scratch.pair);
        }
    }
    if let Some(CharNgrams { min, max }) = spec.char_ngrams {
        for word in &scratch.bounds {
            scratch.framed.clear();
            scratch.framed.push('<');
            scratch.framed.push_str(&scratch.words[word.clone()]);
            scratch.framed.push('>');
            // N-grams count characters, not bytes: note where each character starts.
            scratch.char_starts.clear();
            scratch.char_starts.extend(scratch.framed.char_indices().map(|(offset, _)| offset));
            scratch.char_starts.push(scratch.framed.len());
            let chars = scratch.char_starts.len() - 1;
            for n in min..=max.min(chars) {
                for first in 0..=chars - n {
                    scratch.pair.clear();
                    scratch.pair.push('#');
                    scratch.pair.push_str(&scratch.framed[scratch.char_starts[first]..scratch.char_starts[first + n]]);
                    visit(&scratch.pair);
                }
            }
        }
    }
}

/// Decodes a text field that arrived as bytes, naming the field when it is not UTF-8.
pub fn field_from_bytes<'a>(field: &'static str, bytes: &'a [u8]) -> Result<&'a str, TextError> {
    std::str::from_utf8(bytes).map_err(|error| TextError::NotUtf8 { field, offset: error.valid_up_to() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectorizer(vocabulary: &[&str], max_ngram: usize) -> TextVectorizer {
        TextVectorizer::new(TextSpec {
            max_ngram,
            vocabulary: vocabulary.iter().map(|term| term.to_string()).collect(),
            ..TextSpec::with_defaults()
        })
        .unwrap()
    }

    #[test]
    fn multi_hot_of_title_and_description() {
        let v = vectorizer(&["blue", "men", "shirt", "tshirt"], 1);
        let mut out = vec![0.0; v.dim()];
        v.encode_into(Some("Quechua Men Blue T-shirt"), Some("BLUE, blue!"), &mut out).unwrap();
        assert_eq!(out, [1.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn null_fields_give_a_zero_vector() {
        let v = vectorizer(&["blue"], 1);
        let mut out = vec![0.0; 1];
        v.encode_into(None, None, &mut out).unwrap();
        assert_eq!(out, [0.0]);
    }

    #[test]
    fn word_pairs_when_asked() {
        let v = vectorizer(&["men", "men blue"], 2);
        assert_eq!(v.terms("Men Blue"), ["men", "blue", "men blue"]);
        let mut out = vec![0.0; 2];
        v.encode_into(Some("men blue"), None, &mut out).unwrap();
        assert_eq!(out, [1.0, 1.0]);
    }

    #[test]
    fn character_ngrams_of_each_framed_word() {
        let spec = TextSpec { char_ngrams: Some(CharNgrams { min: 3, max: 4 }), ..TextSpec::with_defaults() };
        let v = TextVectorizer::new(TextSpec { vocabulary: vec!["#hirt".into(), "#<t-".into()], ..spec }).unwrap();
        assert_eq!(
            v.terms("T-Shirt Über"),
            [
                "shirt", "über", "#<sh", "#shi", "#hir", "#irt", "#rt>", "#<shi", "#shir", "#hirt", "#irt>", "#<üb",
                "#übe", "#ber", "#er>", "#<übe", "#über", "#ber>"
            ]
        );
        // The framed word is shorter than the longest n-gram: the n-grams it has.
        assert_eq!(v.terms("ab"), ["ab", "#<ab", "#ab>", "#<ab>"]);
        let mut out = vec![0.0; 2];
        v.encode_into(Some("tshirts"), None, &mut out).unwrap();
        assert_eq!(out, [1.0, 0.0], "a spelling not seen in training shares the n-gram `hirt`");
    }

    #[test]
    fn character_ngram_ranges_are_checked() {
        for (min, max) in [(0, 3), (4, 3), (3, 9)] {
            let spec = TextSpec { char_ngrams: Some(CharNgrams { min, max }), ..TextSpec::with_defaults() };
            let error = TextVectorizer::new(spec).unwrap_err();
            assert!(error.to_string().contains("1 <= min <= max <= 8"), "{error}");
        }
    }

    #[test]
    fn bundles_without_character_ngrams_still_load() {
        let json = r#"{"lowercase":true,"min_token_chars":2,"max_ngram":1,"encoding":"multi_hot",
            "max_field_bytes":100,"vocabulary":["red"]}"#;
        let spec: TextSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.char_ngrams, None);
    }

    #[test]
    fn too_long_and_not_utf8_are_row_errors() {
        let v = TextVectorizer::new(TextSpec { max_field_bytes: 8, ..TextSpec::with_defaults() }).unwrap();
        let error = v.encode_into(Some("ok"), Some("far too long here"), &mut []).unwrap_err();
        assert_eq!(error.to_string(), "description is 17 bytes, over the limit of 8 bytes");
        let error = field_from_bytes("title", b"ab\xffcd").unwrap_err();
        assert_eq!(error.to_string(), "title is not valid UTF-8 (first bad byte at offset 2)");
    }

    #[test]
    fn fit_keeps_frequent_terms_deterministically() {
        let texts = ["red shirt", "blue shirt", "red dress", "x"];
        let v = TextVectorizer::fit(TextSpec::with_defaults(), texts, 2, 10).unwrap();
        assert_eq!(v.spec().vocabulary, ["red", "shirt"]);
        let v = TextVectorizer::fit(TextSpec::with_defaults(), texts, 1, 2).unwrap();
        assert_eq!(v.spec().vocabulary, ["red", "shirt"]);
    }

    #[test]
    fn refuses_duplicate_terms() {
        let error =
            TextVectorizer::new(TextSpec { vocabulary: vec!["a".into(), "a".into()], ..TextSpec::with_defaults() })
                .unwrap_err();
        assert!(error.to_string().contains("twice"));
    }
}
