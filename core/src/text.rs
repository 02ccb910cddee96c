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
    /// Character n-grams hashed into input positions after the vocabulary's instead of kept in
    /// it as `#` terms (absent in bundles made before: in the vocabulary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ngram_buckets: Option<NgramBuckets>,
    /// What the character n-grams are cut from (absent in bundles made before: words).
    #[serde(default, skip_serializing_if = "NgramSource::is_words")]
    pub ngram_source: NgramSource,
    /// How a `tf_idf` row is scaled to unit length (absent in bundles made before: whole).
    #[serde(default, skip_serializing_if = "RowNorm::is_whole")]
    pub row_norm: RowNorm,
    /// `multi_hot` (1.0 when a term occurs), `counts` (occurrences) or `tf_idf`.
    pub encoding: TextEncoding,
    /// Inverse document frequency of each input position, buckets included (`tf_idf` only;
    /// empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub idf: Vec<f32>,
    /// A title or description longer than this (in bytes) is refused for that row instead of
    /// being silently cut.
    pub max_field_bytes: usize,
    /// Term of each input position, in input order (n-gram buckets follow).
    pub vocabulary: Vec<String>,
}

/// Character n-grams hashed into `count` buckets, as fastText does: an n-gram costs a hash
/// instead of a lookup, and one never seen in training still shares a bucket with seen ones.
/// The hash is named in the bundle, so that training and scoring cannot disagree on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NgramBuckets {
    pub count: u32,
    pub hash: NgramHash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NgramHash {
    /// 32-bit FNV-1a of the framed n-gram's UTF-8 bytes (`<sh`), modulo the bucket count.
    #[serde(rename = "fnv1a_32")]
    Fnv1a32,
}

impl NgramBuckets {
    /// The most buckets a vectorizer accepts: each is a float per row in every batch.
    pub const MAX_COUNT: u32 = 1 << 22;

    pub fn new(count: u32) -> Self {
        Self { count, hash: NgramHash::Fnv1a32 }
    }

    pub fn validate(self) -> Result<Self> {
        if self.count == 0 || self.count > Self::MAX_COUNT {
            return Err(Error::Vectorizer(format!(
                "character n-gram buckets must number 1 to {}, not {}",
                Self::MAX_COUNT,
                self.count
            )));
        }
        Ok(self)
    }

    fn bucket(self, hash: u32) -> u32 {
        match self.hash {
            NgramHash::Fnv1a32 => hash % self.count,
        }
    }
}

/// The strings cut into character n-grams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum NgramSource {
    /// Each word (alphanumeric run of `min_token_chars` or more): "T-Shirt" is cut as "shirt".
    #[default]
    Words,
    /// Each whitespace-separated token, lower-cased if asked, punctuation and one-letter words
    /// kept, as scikit-learn's `char_wb` analyzer: "t-shirt" has n-grams ("<t-", "t-s") that
    /// tell it from "shirt", as "3/4th" and "men's" keep theirs. 1.5 points of leaf top-1 on the
    /// fashion data (benches/TRAINING.md).
    Tokens,
}

impl NgramSource {
    fn is_words(&self) -> bool {
        *self == Self::Words
    }
}

/// How a `tf_idf` row is scaled to unit length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum RowNorm {
    /// The whole row at once.
    #[default]
    Whole,
    /// Words (and pairs) to unit length, and apart from them the character n-grams, as
    /// scikit-learn's `FeatureUnion` of a word and a character vectorizer: the twenty-odd
    /// n-grams of a word do not drown the word itself.
    EachPart,
}

impl RowNorm {
    fn is_whole(&self) -> bool {
        *self == Self::Whole
    }
}

const FNV_OFFSET: u32 = 0x811c_9dc5;

fn fnv1a(hash: u32, bytes: &[u8]) -> u32 {
    bytes.iter().fold(hash, |hash, &byte| (hash ^ byte as u32).wrapping_mul(0x0100_0193))
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
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
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
    /// Length of the text input vector: the vocabulary, then the n-gram buckets.
    pub fn dim(&self) -> usize {
        self.vocabulary.len() + self.ngram_buckets.map_or(0, |buckets| buckets.count as usize)
    }

    /// The defaults used by lakecat's trainers, with an empty vocabulary.
    pub fn with_defaults() -> Self {
        Self {
            lowercase: true,
            min_token_chars: 2,
            max_ngram: 1,
            char_ngrams: None,
            ngram_buckets: None,
            ngram_source: NgramSource::Words,
            row_norm: RowNorm::Whole,
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
    /// Vocabulary n-grams of at most 7 bytes (those of ASCII words, framing included) → input
    /// position, keyed by their bytes packed into a `u64` ([`packed`]): a lookup builds no string
    /// and follows no pointer. Longer n-grams are looked up in `index` as `#` + n-gram. Empty
    /// when n-grams are hashed into buckets.
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
        if let Some(buckets) = spec.ngram_buckets {
            buckets.validate()?;
            if spec.char_ngrams.is_none() {
                return Err(Error::Vectorizer("n-gram buckets are set but character n-grams are not".into()));
            }
        }
        let weighted = spec.encoding == TextEncoding::TfIdf;
        let dim = spec.dim();
        if (weighted && spec.idf.len() != dim) || (!weighted && !spec.idf.is_empty()) {
            return Err(Error::Vectorizer(format!(
                "a {:?} vectorizer of {dim} inputs has {} idf weights",
                spec.encoding,
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
        let short_ngrams = match spec.ngram_buckets {
            Some(_) => FxHashMap::default(),
            None => spec
                .vocabulary
                .iter()
                .enumerate()
                .filter_map(|(position, term)| Some((packed(term.strip_prefix('#')?)?, position as u32)))
                .collect(),
        };
        let mut vectorizer = Self { spec, index, word_ngrams: Vec::new(), ngram_positions: Vec::new(), short_ngrams };
        if let Some(ngrams) = vectorizer.spec.char_ngrams {
            let mut scratch = NgramScratch::default();
            let mut ngram_positions = Vec::new();
            let word_ngrams = vectorizer
                .spec
                .vocabulary
                .iter()
                .map(|term| {
                    let start = ngram_positions.len() as u32;
                    // Words are alphanumeric runs; pairs hold a space and n-grams start with `#`.
                    if is_word(term) {
                        vectorizer.for_each_ngram_position(ngrams, term, &mut scratch, |position| {
                            ngram_positions.push(position)
                        });
                    }
                    (start, ngram_positions.len() as u32)
                })
                .collect();
            (vectorizer.word_ngrams, vectorizer.ngram_positions) = (word_ngrams, ngram_positions);
        }
        Ok(vectorizer)
    }

    /// Calls `visit` with the input position of each character n-gram of `word` that has one:
    /// its bucket, or its place in the vocabulary if there.
    fn for_each_ngram_position(
        &self,
        ngrams: CharNgrams,
        word: &str,
        scratch: &mut NgramScratch,
        mut visit: impl FnMut(u32),
    ) {
        match self.spec.ngram_buckets {
            Some(buckets) => {
                let first_bucket = self.spec.vocabulary.len() as u32;
                for_each_ngram_hash(ngrams, word, scratch, |hash| visit(first_bucket + buckets.bucket(hash)));
            }
            None => for_each_char_ngram(ngrams, word, scratch, |ngram| {
                if let Some(position) = self.vocabulary_ngram_position(ngram) {
                    visit(position)
                }
            }),
        }
    }

    /// The input position of the character n-gram `ngram` (without its `#`), if in the
    /// vocabulary.
    fn vocabulary_ngram_position(&self, ngram: &str) -> Option<u32> {
        match packed(ngram) {
            Some(key) => self.short_ngrams.get(&key).copied(),
            None => {
                // `#` + at most `CharNgrams::MAX_CHARS` characters of 4 bytes, built on the stack.
                let mut term = [0u8; 1 + 4 * CharNgrams::MAX_CHARS];
                let term = term.get_mut(..=ngram.len())?;
                term[0] = b'#';
                term[1..].copy_from_slice(ngram.as_bytes());
                self.index.get(std::str::from_utf8(term).ok()?).copied()
            }
        }
    }

    /// Learns a vocabulary from training texts: terms found in at least `min_document_count`
    /// texts, the `max_terms` most frequent kept (ties broken alphabetically, so the result is
    /// deterministic); with n-gram buckets, the vocabulary holds words (and pairs) only. For
    /// `tf_idf`, also each input's smoothed inverse document frequency,
    /// `ln((1 + texts) / (1 + texts with the term)) + 1` (scikit-learn's).
    pub fn fit<'a>(
        settings: TextSpec,
        texts: impl IntoIterator<Item = &'a str>,
        min_document_count: usize,
        max_terms: usize,
    ) -> Result<Self> {
        // With buckets, the vocabulary's terms are words and pairs, and each bucket has a count.
        let hashed = settings.ngram_buckets.zip(settings.char_ngrams);
        let vocabulary_terms =
            TextSpec { char_ngrams: settings.char_ngrams.filter(|_| hashed.is_none()), ..settings.clone() };
        let mut bucket_counts = vec![0usize; hashed.map_or(0, |(buckets, _)| buckets.count as usize)];
        let mut document_counts: HashMap<String, usize> = HashMap::new();
        let (mut terms, mut buckets_seen, mut documents) = (Vec::new(), Vec::new(), 0usize);
        let (mut scratch, mut token) = (NgramScratch::default(), String::new());
        for text in texts {
            documents += 1;
            terms.clear();
            tokenize(&vocabulary_terms, text, &mut terms);
            terms.sort_unstable();
            terms.dedup();
            for term in &terms {
                *document_counts.entry(term.clone()).or_default() += 1;
            }
            if let Some((buckets, ngrams)) = hashed {
                buckets_seen.clear();
                let mut count = |source: &str| {
                    for_each_ngram_hash(ngrams, source, &mut scratch, |hash| buckets_seen.push(buckets.bucket(hash)))
                };
                match settings.ngram_source {
                    NgramSource::Words => terms.iter().filter(|term| is_word(term)).for_each(|word| count(word)),
                    NgramSource::Tokens => for_each_token(&settings, text, &mut token, count),
                }
                buckets_seen.sort_unstable();
                buckets_seen.dedup();
                for &bucket in &buckets_seen {
                    bucket_counts[bucket as usize] += 1;
                }
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
                .map(|(_, count)| count)
                .chain(&bucket_counts)
                .map(|count| (((1 + documents) as f64 / (1 + count) as f64).ln() + 1.0) as f32)
                .collect(),
            TextEncoding::MultiHot | TextEncoding::Counts => Vec::new(),
        };
        let vocabulary = ranked.into_iter().map(|(term, _)| term).collect();
        Self::new(TextSpec { vocabulary, idf, ..settings })
    }

    pub fn spec(&self) -> &TextSpec {
        &self.spec
    }

    /// Length of the text input vector ([`TextSpec::dim`]).
    pub fn dim(&self) -> usize {
        self.spec.dim()
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

    /// Overwrites `out` (length [`Self::dim`]) with the vector of title + description. NULL
    /// fields contribute nothing; a refused row leaves `out` zeroed.
    pub fn encode_into(
        &self,
        title: Option<&str>,
        description: Option<&str>,
        out: &mut [f32],
    ) -> Result<(), TextError> {
        debug_assert_eq!(out.len(), self.dim());
        // Zeroed here, just before its terms are written, so that the row is in cache when they
        // are: zeroing a whole batch first left each term's write a miss (half the time taken).
        out.fill(0.0);
        // Both fields are checked before any term is written.
        for (field, text) in [("title", title), ("description", description)] {
            if let Some(text) = text {
                self.check_field(field, text)?;
            }
        }
        ENCODE_SCRATCH.with_borrow_mut(|scratch| self.encode_with(title, description, scratch, out));
        Ok(())
    }

    /// [`Self::encode_into`] with buffers kept from row to row.
    fn encode_with(
        &self,
        title: Option<&str>,
        description: Option<&str>,
        scratch: &mut EncodeScratch,
        out: &mut [f32],
    ) {
        scratch.clear(self.dim());
        match (self.spec.char_ngrams, self.spec.ngram_source) {
            (Some(ngrams), NgramSource::Tokens) => {
                for text in [title, description].into_iter().flatten() {
                    self.encode_tokens(ngrams, text, scratch, out);
                }
            }
            (ngrams, _) => self.encode_words(ngrams, title, description, scratch, out),
        }
        self.weigh(scratch.terms_written.positions(), scratch.ngrams_written.positions(), out);
    }

    /// The words and pairs of both fields, then the character n-grams of their words, if any.
    fn encode_words(
        &self,
        ngrams: Option<CharNgrams>,
        title: Option<&str>,
        description: Option<&str>,
        scratch: &mut EncodeScratch,
        out: &mut [f32],
    ) {
        let EncodeScratch { words, word_positions, ngram, terms_written, ngrams_written, .. } = scratch;
        let encoding = self.spec.encoding;
        // The words of both fields stay in `words`, each with its input position if known.
        for text in [title, description].into_iter().flatten() {
            for_each_word_and_pair(&self.spec, text, words, |term, is_word| {
                let position = self.index.get(term).copied();
                if is_word {
                    word_positions.push(position);
                }
                if let Some(position) = position {
                    add_term(encoding, out, terms_written, position, 1);
                }
            });
        }
        let Some(ngrams) = ngrams else { return };
        // `terms_written` holds each distinct known word (and pair) once, and `out` its count:
        // its n-grams are added once, times that count (a word has ~20 n-grams, and
        // descriptions repeat their words: Flipkart, 39% of a field's words).
        for &position in terms_written.positions() {
            // A word found in the vocabulary is a vocabulary word: its n-grams are known.
            let (start, end) = self.word_ngrams[position as usize];
            let count = out[position as usize] as u32;
            for &ngram_position in &self.ngram_positions[start as usize..end as usize] {
                add_term(encoding, out, ngrams_written, ngram_position, count);
            }
        }
        for (bounds, position) in words.bounds.iter().zip(word_positions.iter()) {
            if position.is_none() {
                self.for_each_ngram_position(ngrams, &words.words[bounds.clone()], ngram, |position| {
                    add_term(encoding, out, ngrams_written, position, 1)
                });
            }
        }
    }

    /// The words, pairs and token n-grams of `text` ([`NgramSource::Tokens`]) in one pass over
    /// its whitespace tokens: a token that is one word, as most are, is lower-cased and looked
    /// up once for both its word and its n-grams (words never cross whitespace, so a token's
    /// words are those the whole text would give).
    fn encode_tokens(&self, ngrams: CharNgrams, text: &str, scratch: &mut EncodeScratch, out: &mut [f32]) {
        let EncodeScratch { words, ngram, terms_written, ngrams_written, token, .. } = scratch;
        let encoding = self.spec.encoding;
        let first_word = words.bounds.len();
        for raw in text.split_whitespace() {
            lowercase_into(&self.spec, raw, token);
            let token_position = if is_word(token) {
                let position = self.index.get(token.as_str()).copied();
                if char_count(token) >= self.spec.min_token_chars {
                    let start = words.words.len();
                    words.words.push_str(token);
                    words.bounds.push(start..words.words.len());
                    if let Some(position) = position {
                        add_term(encoding, out, terms_written, position, 1);
                    }
                }
                position
            } else {
                push_words(&self.spec, raw, words, |word| {
                    if let Some(&position) = self.index.get(word) {
                        add_term(encoding, out, terms_written, position, 1);
                    }
                });
                None
            };
            // A token that is a vocabulary word has its n-grams precomputed.
            match token_position {
                Some(position) => {
                    let (start, end) = self.word_ngrams[position as usize];
                    for &ngram_position in &self.ngram_positions[start as usize..end as usize] {
                        add_term(encoding, out, ngrams_written, ngram_position, 1);
                    }
                }
                None => self.for_each_ngram_position(ngrams, token, ngram, |position| {
                    add_term(encoding, out, ngrams_written, position, 1)
                }),
            }
        }
        for_each_pair(&self.spec, words, first_word, |pair| {
            if let Some(&position) = self.index.get(pair) {
                add_term(encoding, out, terms_written, position, 1);
            }
        });
    }

    /// TF-IDF's weighting of the counts at the positions written, words (and pairs) and
    /// character n-grams apart; nothing for other encodings.
    fn weigh(&self, terms_written: &[u32], ngrams_written: &[u32], out: &mut [f32]) {
        if self.spec.encoding == TextEncoding::TfIdf {
            let (terms, ngrams) = (self.tf_idf(terms_written, out), self.tf_idf(ngrams_written, out));
            let scales = match self.spec.row_norm {
                RowNorm::Whole => [1.0 / (terms + ngrams).sqrt(); 2],
                RowNorm::EachPart => [1.0 / terms.sqrt(), 1.0 / ngrams.sqrt()],
            };
            for (written, scale) in [terms_written, ngrams_written].into_iter().zip(scales) {
                for &position in written {
                    out[position as usize] *= scale;
                }
            }
        }
    }

    /// Replaces each count at `written` by its sublinear tf × idf; returns their sum of squares.
    /// One part at a time, so that the sum stays in a register (summed through an array indexed
    /// by part, each addition waited for the store of the last).
    fn tf_idf(&self, written: &[u32], out: &mut [f32]) -> f32 {
        let sublinear_tf = &*SUBLINEAR_TF;
        written
            .iter()
            .map(|&position| {
                let slot = &mut out[position as usize];
                let tf = sublinear_tf.get(*slot as usize).copied().unwrap_or_else(|| 1.0 + slot.ln());
                *slot = tf * self.spec.idf[position as usize];
                *slot * *slot
            })
            .sum()
    }
}

/// Appends the terms of `text` to `terms`.
fn tokenize(spec: &TextSpec, text: &str, terms: &mut Vec<String>) {
    for_each_term(spec, text, |term| terms.push(term.to_string()));
}

/// Whether a vocabulary term is a word (not a word pair or a character n-gram).
fn is_word(term: &str) -> bool {
    if term.is_ascii() {
        term.bytes().all(|byte| byte.is_ascii_alphanumeric())
    } else {
        term.chars().all(char::is_alphanumeric)
    }
}

/// Characters of `text` (its length, when ASCII).
fn char_count(text: &str) -> usize {
    if text.is_ascii() { text.len() } else { text.chars().count() }
}

/// Adds `count` occurrences of the term at `position` (sets it, for multi-hot), noting the
/// position in `written` the first time.
fn add_term(encoding: TextEncoding, out: &mut [f32], written: &mut Written, position: u32, count: u32) {
    let slot = &mut out[position as usize];
    written.note(position, *slot == 0.0);
    match encoding {
        TextEncoding::MultiHot => *slot = 1.0,
        TextEncoding::Counts | TextEncoding::TfIdf => *slot += count as f32,
    }
}

/// `1 + ln(count)` for the counts most terms have, so that weighing a row calls `ln` rarely.
static SUBLINEAR_TF: std::sync::LazyLock<[f32; 64]> =
    std::sync::LazyLock::new(|| std::array::from_fn(|count| 1.0 + (count as f32).ln()));

thread_local! {
    /// Buffers of [`TextVectorizer::encode_into`], kept per thread so that a row allocates
    /// nothing once they have grown.
    static ENCODE_SCRATCH: std::cell::RefCell<EncodeScratch> = Default::default();
}

#[derive(Default)]
struct EncodeScratch {
    words: Scratch,
    /// Per word of `words`: its input position, if in the vocabulary.
    word_positions: Vec<Option<u32>>,
    ngram: NgramScratch,
    /// The input positions set, each once: words and pairs, and character n-grams (which
    /// [`RowNorm::EachPart`] scales apart).
    terms_written: Written,
    ngrams_written: Written,
    /// The token being cut ([`NgramSource::Tokens`]).
    token: String,
}

impl EncodeScratch {
    /// Empties the buffers for a new row of `dim` inputs, keeping their capacity.
    fn clear(&mut self, dim: usize) {
        self.words.words.clear();
        self.words.bounds.clear();
        self.word_positions.clear();
        self.terms_written.clear(dim);
        self.ngrams_written.clear(dim);
    }
}

/// Input positions, each noted once, without a branch on whether it is new: whether a term
/// was seen before in the row is a coin toss to the branch predictor (a word's twenty-odd
/// n-grams are all new or all seen, then the next word's differ).
#[derive(Default)]
struct Written {
    /// At least one more than the row's inputs, so that the next place is always there.
    slots: Vec<u32>,
    len: usize,
}

impl Written {
    fn clear(&mut self, dim: usize) {
        if self.slots.len() <= dim {
            self.slots.resize(dim + 1, 0);
        }
        self.len = 0;
    }

    /// Writes `position` in the next place, and keeps it there if `new`.
    fn note(&mut self, position: u32, new: bool) {
        // In bounds: `len` counts distinct positions of the row, at most `dim`.
        self.slots[self.len] = position;
        self.len += usize::from(new);
    }

    fn positions(&self) -> &[u32] {
        &self.slots[..self.len]
    }
}

/// The words of a row's texts, back to back, and the word pair being built.
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
/// the character n-grams ([`CharNgrams`]) of each word or token ([`NgramSource`]).
fn for_each_term(spec: &TextSpec, text: &str, mut visit: impl FnMut(&str)) {
    let mut scratch = Scratch::default();
    for_each_word_and_pair(spec, text, &mut scratch, |term, _| visit(term));
    if let Some(ngrams) = spec.char_ngrams {
        let (mut ngram_scratch, mut term) = (NgramScratch::default(), String::new());
        let mut cut = |source: &str| {
            for_each_char_ngram(ngrams, source, &mut ngram_scratch, |ngram| {
                term.clear();
                term.push('#');
                term.push_str(ngram);
                visit(&term);
            })
        };
        match spec.ngram_source {
            NgramSource::Words => scratch.bounds.iter().for_each(|word| cut(&scratch.words[word.clone()])),
            NgramSource::Tokens => for_each_token(spec, text, &mut String::new(), cut),
        }
    }
}

/// Calls `visit` with each whitespace-separated token of `text` ([`NgramSource::Tokens`]),
/// lower-cased if asked, in `buffer`.
fn for_each_token(spec: &TextSpec, text: &str, buffer: &mut String, mut visit: impl FnMut(&str)) {
    for token in text.split_whitespace() {
        lowercase_into(spec, token, buffer);
        visit(buffer);
    }
}

/// Overwrites `buffer` with `token`, lower-cased if asked.
fn lowercase_into(spec: &TextSpec, token: &str, buffer: &mut String) {
    buffer.clear();
    if spec.lowercase && !token.is_ascii() {
        buffer.push_str(&token.to_lowercase());
    } else {
        buffer.push_str(token);
        if spec.lowercase {
            buffer.make_ascii_lowercase();
        }
    }
}

/// Calls `visit(term, is_word)` with each word of `text`, then each pair of adjacent words
/// (`max_ngram` 2); the words are appended to `scratch.words` and their places to
/// `scratch.bounds`, after those of earlier texts (pairs stay within one text).
fn for_each_word_and_pair(spec: &TextSpec, text: &str, scratch: &mut Scratch, mut visit: impl FnMut(&str, bool)) {
    let first_word = scratch.bounds.len();
    push_words(spec, text, scratch, |word| visit(word, true));
    for_each_pair(spec, scratch, first_word, |pair| visit(pair, false));
}

/// Appends the words of `text` (maximal alphanumeric runs of at least `min_token_chars`
/// characters, lower-cased if asked) to `scratch`, calling `visit` with each.
fn push_words(spec: &TextSpec, text: &str, scratch: &mut Scratch, mut visit: impl FnMut(&str)) {
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if char_count(word) < spec.min_token_chars {
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
}

/// Calls `visit` with each pair of adjacent words of `scratch` from `first_word` on, when
/// `max_ngram` is 2.
fn for_each_pair(spec: &TextSpec, scratch: &mut Scratch, first_word: usize, mut visit: impl FnMut(&str)) {
    if spec.max_ngram == 2 {
        for adjacent in scratch.bounds[first_word..].windows(2) {
            scratch.pair.clear();
            scratch.pair.push_str(&scratch.words[adjacent[0].clone()]);
            scratch.pair.push(' ');
            scratch.pair.push_str(&scratch.words[adjacent[1].clone()]);
            visit(&scratch.pair);
        }
    }
}

impl NgramScratch {
    /// Frames `word` as `<word>` and notes where each of its characters starts (n-grams count
    /// characters, not bytes); returns the number of characters.
    fn frame(&mut self, word: &str) -> usize {
        self.framed.clear();
        self.framed.push('<');
        self.framed.push_str(word);
        self.framed.push('>');
        self.char_starts.clear();
        if self.framed.is_ascii() {
            self.char_starts.extend(0..self.framed.len());
        } else {
            self.char_starts.extend(self.framed.char_indices().map(|(offset, _)| offset));
        }
        self.char_starts.push(self.framed.len());
        self.char_starts.len() - 1
    }
}

/// Calls `visit` with each character n-gram of `word` framed as `<word>` (without the `#` the
/// vocabulary prefixes), shortest first, left to right.
fn for_each_char_ngram(ngrams: CharNgrams, word: &str, scratch: &mut NgramScratch, mut visit: impl FnMut(&str)) {
    let chars = scratch.frame(word);
    for n in ngrams.min..=ngrams.max.min(chars) {
        for first in 0..=chars - n {
            visit(&scratch.framed[scratch.char_starts[first]..scratch.char_starts[first + n]]);
        }
    }
}

/// Calls `visit` with the FNV-1a hash of each n-gram [`for_each_char_ngram`] gives (in another
/// order), each hashed as it grows from its first character, so that none is copied.
fn for_each_ngram_hash(ngrams: CharNgrams, word: &str, scratch: &mut NgramScratch, mut visit: impl FnMut(u32)) {
    let chars = scratch.frame(word);
    let (bytes, starts) = (scratch.framed.as_bytes(), &scratch.char_starts);
    for first in 0..chars {
        let mut hash = FNV_OFFSET;
        for end in first + 1..=chars.min(first + ngrams.max) {
            hash = fnv1a(hash, &bytes[starts[end - 1]..starts[end]]);
            if end - first >= ngrams.min {
                visit(hash);
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
    fn character_ngrams_of_each_framed_token() {
        let spec = TextSpec {
            char_ngrams: Some(CharNgrams { min: 3, max: 3 }),
            ngram_source: NgramSource::Tokens,
            ..TextSpec::with_defaults()
        };
        let v = TextVectorizer::new(TextSpec { vocabulary: vec!["#<t-".into(), "#rt>".into()], ..spec }).unwrap();
        // The hyphen and the one-letter word stay in the n-grams; the words are as before.
        assert_eq!(v.terms("T-Shirt a"), ["shirt", "#<t-", "#t-s", "#-sh", "#shi", "#hir", "#irt", "#rt>", "#<a>"]);
        let mut out = vec![0.0; 2];
        v.encode_into(Some("shirt"), None, &mut out).unwrap();
        assert_eq!(out, [0.0, 1.0], "a shirt is not a t-shirt");
    }

    #[test]
    fn each_part_of_a_tf_idf_row_has_unit_length() {
        let spec = TextSpec {
            char_ngrams: Some(CharNgrams { min: 3, max: 4 }),
            ngram_buckets: Some(NgramBuckets::new(64)),
            ngram_source: NgramSource::Tokens,
            row_norm: RowNorm::EachPart,
            encoding: TextEncoding::TfIdf,
            ..TextSpec::with_defaults()
        };
        let v = TextVectorizer::fit(spec, ["blue t-shirt", "red shirt", "blue jeans"], 1, 100).unwrap();
        let words = v.spec().vocabulary.len();
        let mut out = vec![0.0; v.dim()];
        v.encode_into(Some("Blue T-Shirt"), None, &mut out).unwrap();
        let length = |values: &[f32]| values.iter().map(|value| value * value).sum::<f32>().sqrt();
        assert!((length(&out[..words]) - 1.0).abs() < 1e-5, "{out:?}");
        assert!((length(&out[words..]) - 1.0).abs() < 1e-5, "{out:?}");
    }

    /// The input position of a term as [`TextVectorizer::terms`] names it.
    fn term_position(v: &TextVectorizer, term: &str) -> Option<u32> {
        match (term.strip_prefix('#'), v.spec.ngram_buckets) {
            (Some(ngram), Some(buckets)) => {
                Some(v.spec.vocabulary.len() as u32 + buckets.bucket(fnv1a(FNV_OFFSET, ngram.as_bytes())))
            }
            _ => v.index.get(term).copied(),
        }
    }

    /// Known words take their precomputed n-grams, unknown ones are cut, and each distinct word
    /// is counted once: either way the vector is exactly the one the terms give, for multi-hot
    /// and counts, n-grams in the vocabulary or in buckets, pairs, repeats and Unicode.
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
            // Tokens that are several words, short words in and out of tokens, other spaces.
            "  t-shirt,banana\tb\u{a0}Banana-Bandana (2-pack) a1 Ä x-ÜBER ΟΔΟΣ-Α ΟΔΟΣ\n",
        ];
        let settings = [TextEncoding::MultiHot, TextEncoding::Counts].into_iter().flat_map(|encoding| {
            [None, Some(NgramBuckets::new(7))].into_iter().flat_map(move |buckets| {
                [NgramSource::Words, NgramSource::Tokens].map(|source| (encoding, buckets, source))
            })
        });
        for (encoding, ngram_buckets, ngram_source) in settings {
            let spec = TextSpec {
                max_ngram: 2,
                char_ngrams: Some(CharNgrams { min: 2, max: 4 }),
                ngram_buckets,
                ngram_source,
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
                    if let Some(position) = term_position(&v, &term) {
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
                assert_eq!(out, twice, "{text:?} ({encoding:?}, {ngram_buckets:?}, {ngram_source:?})");
            }
        }
    }

    #[test]
    fn hashed_ngrams_are_the_cut_ngrams_hashed() {
        let ngrams = CharNgrams { min: 2, max: 5 };
        for word in ["shirt", "ab", "x", "grüße", "t\u{0301}shirt"] {
            let mut cut = Vec::new();
            for_each_char_ngram(ngrams, word, &mut NgramScratch::default(), |ngram| {
                cut.push(fnv1a(FNV_OFFSET, ngram.as_bytes()))
            });
            let mut hashed = Vec::new();
            for_each_ngram_hash(ngrams, word, &mut NgramScratch::default(), |hash| hashed.push(hash));
            cut.sort_unstable();
            hashed.sort_unstable();
            assert_eq!(hashed, cut, "{word}");
        }
        // The published FNV-1a test vector, so that any other implementation can match it.
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn fit_with_buckets_keeps_words_and_weighs_every_bucket() {
        let spec = TextSpec {
            char_ngrams: Some(CharNgrams { min: 3, max: 3 }),
            ngram_buckets: Some(NgramBuckets::new(4)),
            encoding: TextEncoding::TfIdf,
            ..TextSpec::with_defaults()
        };
        let v = TextVectorizer::fit(spec, ["red shirt", "blue shirt", "red dress"], 1, 10).unwrap();
        assert_eq!(v.spec().vocabulary, ["blue", "dress", "red", "shirt"]);
        assert_eq!((v.dim(), v.spec().idf.len()), (8, 8));
        // `<re` is in two texts of three: its bucket's idf is at most that of a two-text term.
        let bucket = v.spec().vocabulary.len() + (fnv1a(FNV_OFFSET, b"<re") % 4) as usize;
        assert!(v.spec().idf[bucket] <= v.spec().idf[2], "{:?}", v.spec().idf);
        let mut out = vec![0.0; v.dim()];
        v.encode_into(Some("greenish"), None, &mut out).unwrap();
        assert!(out[..4].iter().all(|value| *value == 0.0) && out[4..].iter().any(|value| *value > 0.0));
        assert!((out.iter().map(|value| value * value).sum::<f32>() - 1.0).abs() < 1e-6, "unit length");

        let json = serde_json::to_string(v.spec()).unwrap();
        assert!(json.contains(r#""ngram_buckets":{"count":4,"hash":"fnv1a_32"}"#), "{json}");
        let error = serde_json::from_str::<TextSpec>(&json.replace("fnv1a_32", "xxh3")).unwrap_err();
        assert!(error.to_string().contains("unknown variant `xxh3`"), "{error}");
    }

    #[test]
    fn bucket_counts_are_checked() {
        let spec = |char_ngrams, count| TextSpec {
            char_ngrams,
            ngram_buckets: Some(NgramBuckets::new(count)),
            ..TextSpec::with_defaults()
        };
        let ngrams = Some(CharNgrams { min: 3, max: 5 });
        for count in [0, NgramBuckets::MAX_COUNT + 1] {
            let error = TextVectorizer::new(spec(ngrams, count)).unwrap_err();
            assert!(error.to_string().contains("must number 1 to 4194304"), "{error}");
        }
        let error = TextVectorizer::new(spec(None, 8)).unwrap_err();
        assert!(error.to_string().contains("character n-grams are not"), "{error}");
        assert_eq!(TextVectorizer::new(spec(ngrams, 8)).unwrap().dim(), 8);
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
        assert!(error.to_string().contains("2 inputs has 1 idf weights"), "{error}");
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
