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
    /// `multi_hot` (1.0 when a term occurs), `counts` (occurrences) or `tf_idf`.
    pub encoding: TextEncoding,
    /// Inverse document frequency of each input position (`tf_idf` only; empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub idf: Vec<f32>,
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
    /// Sublinear TF-IDF, as scikit-learn's `TfidfVectorizer(sublinear_tf=True)`: each term
    /// weighs `(1 + ln count) × idf`, then the row is scaled to unit length, so that a long
    /// description does not outweigh a title and words every product has count for little.
    TfIdf,
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
            idf: Vec::new(),
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
    /// Per input position: for a vocabulary word, the range of `ngram_positions` holding the
    /// input positions of its character n-grams (with repeats, in order), computed once, so that
    /// a known word costs one lookup instead of one per n-gram; empty for other terms. Empty
    /// without character n-grams; words outside the vocabulary are cut as usual.
    word_ngrams: Vec<(u32, u32)>,
    ngram_positions: Vec<u32>,
    /// Character n-grams of at most 7 bytes (those of ASCII words, framing included) → input
    /// position, keyed by their bytes packed into a `u64` ([`packed`]): a lookup builds no string
    /// and follows no pointer. Longer n-grams are looked up in `index` as `#` + n-gram.
    short_ngrams: FxHashMap<u64, u32>,
}

/// The bytes of a short n-gram and its length in one `u64`; `None` over 7 bytes.
fn packed(ngram: &str) -> Option<u64> {
    let bytes = ngram.as_bytes();
    if bytes.len() > 7 {
        return None;
    }
    let mut key = [0u8; 8];
    key[..bytes.len()].copy_from_slice(bytes);
    key[7] = bytes.len() as u8;
    Some(u64::from_le_bytes(key))
}

impl TextVectorizer {
    pub fn new(spec: TextSpec) -> Result<Self> {
        if spec.max_ngram == 0 || spec.max_ngram > 2 {
            return Err(Error::Vectorizer(format!("max_ngram must be 1 or 2, not {}", spec.max_ngram)));
        }
        if let Some(char_ngrams) = spec.char_ngrams {
            char_ngrams.validate()?;
        }
        let weighted = spec.encoding == TextEncoding::TfIdf;
        if (weighted && spec.idf.len() != spec.vocabulary.len()) || (!weighted && !spec.idf.is_empty()) {
            return Err(Error::Vectorizer(format!(
                "a {:?} vectorizer of {} terms has {} idf weights",
                spec.encoding,
                spec.vocabulary.len(),
                spec.idf.len()
            )));
        }
        if let Some(weight) = spec.idf.iter().find(|weight| !(weight.is_finite() && **weight > 0.0)) {
            return Err(Error::Vectorizer(format!("idf weights must be positive numbers, not {weight}")));
        }
        let mut index = FxHashMap::with_capacity_and_hasher(spec.vocabulary.len(), Default::default());
        for (position, term) in spec.vocabulary.iter().enumerate() {
            if index.insert(term.clone(), position as u32).is_some() {
                return Err(Error::Vectorizer(format!("the term {term:?} appears twice in the vocabulary")));
            }
        }
        let short_ngrams = spec
            .vocabulary
            .iter()
            .enumerate()
            .filter_map(|(position, term)| Some((packed(term.strip_prefix('#')?)?, position as u32)))
            .collect();
        let mut vectorizer = Self { spec, index, word_ngrams: Vec::new(), ngram_positions: Vec::new(), short_ngrams };
        if let Some(ngrams) = vectorizer.spec.char_ngrams {
            let (mut scratch, mut term_buffer) = (NgramScratch::default(), String::new());
            let mut ngram_positions = Vec::new();
            let word_ngrams = vectorizer
                .spec
                .vocabulary
                .iter()
                .map(|term| {
                    let start = ngram_positions.len() as u32;
                    // Words are alphanumeric runs; pairs hold a space and n-grams start with `#`.
                    if is_word(term) {
                        for_each_char_ngram(ngrams, term, &mut scratch, |ngram| {
                            ngram_positions.extend(vectorizer.ngram_position(ngram, &mut term_buffer));
                        });
                    }
                    (start, ngram_positions.len() as u32)
                })
                .collect();
            (vectorizer.word_ngrams, vectorizer.ngram_positions) = (word_ngrams, ngram_positions);
        }
        Ok(vectorizer)
    }

    /// The input position of the character n-gram `ngram` (without its `#`), if in the
    /// vocabulary; `term` is a buffer for n-grams too long to pack.
    fn ngram_position(&self, ngram: &str, term: &mut String) -> Option<u32> {
        match packed(ngram) {
            Some(key) => self.short_ngrams.get(&key).copied(),
            None => {
                term.clear();
                term.push('#');
                term.push_str(ngram);
                self.index.get(term.as_str()).copied()
            }
        }
    }

    /// Learns a vocabulary from training texts: terms found in at least `min_document_count`
    /// texts, the `max_terms` most frequent kept (ties broken alphabetically, so the result is
    /// deterministic). For `tf_idf`, also each term's smoothed inverse document frequency,
    /// `ln((1 + texts) / (1 + texts with the term)) + 1` (scikit-learn's).
    pub fn fit<'a>(
        settings: TextSpec,
        texts: impl IntoIterator<Item = &'a str>,
        min_document_count: usize,
        max_terms: usize,
    ) -> Result<Self> {
        let mut document_counts: HashMap<String, usize> = HashMap::new();
        let (mut terms, mut documents) = (Vec::new(), 0usize);
        for text in texts {
            documents += 1;
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
        ranked.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        let idf = match settings.encoding {
            TextEncoding::TfIdf => ranked
                .iter()
                .map(|(_, count)| (((1 + documents) as f64 / (1 + count) as f64).ln() + 1.0) as f32)
                .collect(),
            TextEncoding::MultiHot | TextEncoding::Counts => Vec::new(),
        };
        let vocabulary = ranked.into_iter().map(|(term, _)| term).collect();
        Self::new(TextSpec { vocabulary, idf, ..settings })
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
        // The positions written, for TF-IDF's weighting afterwards (not a pass over all terms).
        let mut written = Vec::new();
        let mut set = |position: u32, out: &mut [f32]| {
            let slot = &mut out[position as usize];
            match self.spec.encoding {
                TextEncoding::MultiHot => *slot = 1.0,
                TextEncoding::Counts => *slot += 1.0,
                TextEncoding::TfIdf => {
                    if *slot == 0.0 {
                        written.push(position);
                    }
                    *slot += 1.0
                }
            }
        };
        let (mut scratch, mut ngram_scratch) = (Scratch::default(), NgramScratch::default());
        let (mut word_positions, mut term) = (Vec::new(), String::new());
        for text in [title, description].into_iter().flatten() {
            word_positions.clear();
            for_each_word_and_pair(&self.spec, text, &mut scratch, |term, is_word| {
                let position = self.index.get(term).copied();
                if is_word {
                    word_positions.push(position);
                }
                if let Some(position) = position {
                    set(position, out);
                }
            });
            let Some(ngrams) = self.spec.char_ngrams else { continue };
            for (bounds, position) in scratch.bounds.iter().zip(&word_positions) {
                // A word found in the vocabulary is a vocabulary word: its n-grams are known.
                match position.map(|position| self.word_ngrams[position as usize]) {
                    Some((start, end)) => {
                        for &position in &self.ngram_positions[start as usize..end as usize] {
                            set(position, out);
                        }
                    }
                    None => for_each_char_ngram(ngrams, &scratch.words[bounds.clone()], &mut ngram_scratch, |ngram| {
                        if let Some(position) = self.ngram_position(ngram, &mut term) {
                            set(position, out);
                        }
                    }),
                }
            }
        }
        if self.spec.encoding == TextEncoding::TfIdf {
            let mut squares = 0.0f32;
            for &position in &written {
                let slot = &mut out[position as usize];
                *slot = (1.0 + slot.ln()) * self.spec.idf[position as usize];
                squares += *slot * *slot;
            }
            let scale = 1.0 / squares.sqrt();
            for &position in &written {
                out[position as usize] *= scale;
            }
        }
        Ok(())
    }
}

/// Appends the terms of `text` to `terms`.
fn tokenize(spec: &TextSpec, text: &str, terms: &mut Vec<String>) {
    for_each_term(spec, text, &mut Scratch::default(), &mut NgramScratch::default(), |term| {
        terms.push(term.to_string())
    });
}

/// Whether a vocabulary term is a word (not a word pair or a character n-gram).
fn is_word(term: &str) -> bool {
    term.chars().all(char::is_alphanumeric)
}

/// Buffers reused across the words of a text, so that scoring allocates per row, not per term.
#[derive(Default)]
struct Scratch {
    /// The words, as looked up, back to back.
    words: String,
    bounds: Vec<std::ops::Range<usize>>,
    /// The word pair being built.
    pair: String,
}

/// Buffers of [`for_each_char_ngram`].
#[derive(Default)]
struct NgramScratch {
    /// The word being cut into character n-grams, framed as `<word>`.
    framed: String,
    /// Byte offset of each character of `framed`, and its end.
    char_starts: Vec<usize>,
}

/// Calls `visit` with each term of `text`: its words (maximal alphanumeric runs of at least
/// `min_token_chars` characters, lower-cased if asked), then each pair of adjacent words, then
/// the character n-grams of each word ([`CharNgrams`]).
fn for_each_term(
    spec: &TextSpec,
    text: &str,
    scratch: &mut Scratch,
    ngram_scratch: &mut NgramScratch,
    mut visit: impl FnMut(&str),
) {
    for_each_word_and_pair(spec, text, scratch, |term, _| visit(term));
    if let Some(ngrams) = spec.char_ngrams {
        let mut term = String::new();
        for word in &scratch.bounds {
            for_each_char_ngram(ngrams, &scratch.words[word.clone()], ngram_scratch, |ngram| {
                term.clear();
                term.push('#');
                term.push_str(ngram);
                visit(&term);
            });
        }
    }
}

/// Calls `visit(term, is_word)` with each word of `text`, then each pair of adjacent words
/// (`max_ngram` 2); the words stay in `scratch.words` at `scratch.bounds`.
fn for_each_word_and_pair(spec: &TextSpec, text: &str, scratch: &mut Scratch, mut visit: impl FnMut(&str, bool)) {
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
        visit(&scratch.words[start..], true);
    }
    if spec.max_ngram == 2 {
        for adjacent in scratch.bounds.windows(2) {
            scratch.pair.clear();
            scratch.pair.push_str(&scratch.words[adjacent[0].clone()]);
            scratch.pair.push(' ');
            scratch.pair.push_str(&scratch.words[adjacent[1].clone()]);
            visit(&scratch.pair, false);
        }
    }
}

/// Calls `visit` with each character n-gram of `word` framed as `<word>` (without the `#` the
/// vocabulary prefixes), shortest first, left to right.
fn for_each_char_ngram(ngrams: CharNgrams, word: &str, scratch: &mut NgramScratch, mut visit: impl FnMut(&str)) {
    scratch.framed.clear();
    scratch.framed.push('<');
    scratch.framed.push_str(word);
    scratch.framed.push('>');
    // N-grams count characters, not bytes: note where each character starts.
    scratch.char_starts.clear();
    scratch.char_starts.extend(scratch.framed.char_indices().map(|(offset, _)| offset));
    scratch.char_starts.push(scratch.framed.len());
    let chars = scratch.char_starts.len() - 1;
    for n in ngrams.min..=ngrams.max.min(chars) {
        for first in 0..=chars - n {
            visit(&scratch.framed[scratch.char_starts[first]..scratch.char_starts[first + n]]);
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

    /// Known words take their precomputed n-grams, unknown ones are cut: either way the vector
    /// is exactly the one the terms give, for multi-hot and counts, pairs, repeats and Unicode.
    #[test]
    fn precomputed_ngrams_of_known_words_give_the_vector_of_the_terms() {
        let texts = [
            "Banana bandana, BANANA!",
            "Über-shirt tshirt t-shirts",
            "ab a ba",
            "",
            "Nike Men Running Shoes 2026",
            "Grüße äöüßäöüß",
            "äöüßäöüß grüße",
        ];
        for encoding in [TextEncoding::MultiHot, TextEncoding::Counts] {
            let spec = TextSpec {
                max_ngram: 2,
                char_ngrams: Some(CharNgrams { min: 2, max: 4 }),
                encoding,
                ..TextSpec::with_defaults()
            };
            // Known words ("banana", "shirt"), n-grams of unknown ones, a pair.
            let v = TextVectorizer::fit(spec, texts.iter().copied().skip(1), 1, 200).unwrap();
            let v = TextVectorizer::new(TextSpec {
                vocabulary: [v.spec().vocabulary.clone(), vec!["banana".into(), "#ana".into(), "#an".into()]]
                    .concat()
                    .into_iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                ..v.spec().clone()
            })
            .unwrap();
            let words_with_ngrams = v.word_ngrams.iter().filter(|(start, end)| end > start).count();
            assert!(words_with_ngrams > 3, "the vocabulary has words with n-grams");
            for text in texts {
                let mut expected = vec![0.0f32; v.dim()];
                for term in v.terms(text) {
                    if let Some(&position) = v.index.get(&term) {
                        let slot = &mut expected[position as usize];
                        *slot = if encoding == TextEncoding::MultiHot { 1.0 } else { *slot + 1.0 };
                    }
                }
                let mut out = vec![0.0f32; v.dim()];
                v.encode_into(Some(text), Some(text), &mut out).unwrap();
                let mut twice = expected.clone();
                if encoding == TextEncoding::Counts {
                    twice.iter_mut().for_each(|value| *value *= 2.0);
                }
                assert_eq!(out, twice, "{text:?} ({encoding:?})");
            }
        }
    }

    #[test]
    fn tf_idf_weighs_log_counts_by_rarity_and_scales_each_row_to_unit_length() {
        let spec = TextSpec { encoding: TextEncoding::TfIdf, ..TextSpec::with_defaults() };
        let v = TextVectorizer::fit(spec, ["red red shirt", "blue shirt", "red dress"], 1, 10).unwrap();
        assert_eq!(v.spec().vocabulary, ["blue", "dress", "red", "shirt"]);
        let idf = |documents: f64| (4.0 / (1.0 + documents)).ln() + 1.0;
        let expected_idf = [idf(1.0), idf(1.0), idf(2.0), idf(2.0)];
        assert!(v.spec().idf.iter().zip(expected_idf).all(|(got, want)| (*got as f64 - want).abs() < 1e-6));

        let mut out = vec![0.0; 4];
        v.encode_into(Some("Red shirt"), Some("red"), &mut out).unwrap();
        let (red, shirt) = ((1.0 + 2f64.ln()) * idf(2.0), idf(2.0));
        let length = (red * red + shirt * shirt).sqrt();
        let expected = [0.0, 0.0, red / length, shirt / length];
        assert!(out.iter().zip(expected).all(|(got, want)| (*got as f64 - want).abs() < 1e-6), "{out:?}");

        let mut empty = vec![0.0; 4];
        v.encode_into(None, Some("green"), &mut empty).unwrap();
        assert_eq!(empty, [0.0; 4], "no known term: a zero vector, not NaN");
    }

    #[test]
    fn idf_weights_must_match_the_vocabulary() {
        let spec = |encoding, idf: Vec<f32>| TextSpec {
            encoding,
            vocabulary: vec!["red".into(), "blue".into()],
            idf,
            ..TextSpec::with_defaults()
        };
        let error = TextVectorizer::new(spec(TextEncoding::TfIdf, vec![1.0])).unwrap_err();
        assert!(error.to_string().contains("2 terms has 1 idf weights"), "{error}");
        let error = TextVectorizer::new(spec(TextEncoding::TfIdf, vec![1.0, f32::NAN])).unwrap_err();
        assert!(error.to_string().contains("positive"), "{error}");
        assert!(TextVectorizer::new(spec(TextEncoding::MultiHot, vec![1.0, 1.0])).is_err());
        assert!(TextVectorizer::new(spec(TextEncoding::TfIdf, vec![1.0, 2.0])).is_ok());
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
