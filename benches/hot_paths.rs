//! Criterion micro-benchmarks of what `categorize` does per row besides running the model:
//! decode + resize + normalize an image, vectorize title + description, and assemble the
//! prediction struct. Inputs are made here (seeded), so the numbers need no data set;
//! `vectorize_real` also runs on the public Flipkart text when it is next to the checkout.
//!
//!   cargo bench --profile dev --bench hot_paths [-- FILTER]

use std::hint::black_box;
use std::io::Cursor;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use image::{DynamicImage, ImageFormat, RgbImage};
use lakecat_core::taxonomy::split_path;
use lakecat_core::{
    CharNgrams, ImagePreprocessor, ImageSpec, NgramBuckets, Taxonomy, TextEncoding, TextSpec, TextVectorizer,
};
use lakecat_training::TrainingConfig;
use lakecat_udfs::prediction::{PredictionBuilder, PredictionSettings};

/// A small deterministic generator (xorshift64*), so every run benchmarks the same inputs.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A product-photo-like picture: a light background, a shaded object and some noise, which
/// compresses like a catalogue photo rather than like a flat colour.
fn photo(width: u32, height: u32, random: &mut Seeded) -> Vec<u8> {
    let picture = RgbImage::from_fn(width, height, |x, y| {
        let (cx, cy) = (x as f32 / width as f32 - 0.5, y as f32 / height as f32 - 0.5);
        let inside = cx * cx / 0.09 + cy * cy / 0.16 < 1.0;
        let noise = (random.next() % 24) as u8;
        if inside {
            image::Rgb([40 + (200.0 * (cx + 0.5)) as u8 / 2 + noise, 60 + noise, 120 + (100.0 * (cy + 0.5)) as u8])
        } else {
            image::Rgb([235 + noise / 3, 235 + noise / 3, 232 + noise / 3])
        }
    });
    let mut bytes = Vec::new();
    DynamicImage::ImageRgb8(picture).write_to(&mut Cursor::new(&mut bytes), ImageFormat::Jpeg).expect("encode");
    bytes
}

fn decode_and_resize(c: &mut Criterion) {
    let mut random = Seeded(7);
    let mut group = c.benchmark_group("decode_resize");
    // The fashion set's 224 px JPEGs, and a larger catalogue photo.
    for (width, height) in [(224, 224), (1080, 1440)] {
        let jpeg = photo(width, height, &mut random);
        for size in [64, 224] {
            let preprocessor = ImagePreprocessor::new(ImageSpec::imagenet(size)).expect("spec");
            let mut out = vec![0.0f32; preprocessor.spec().values_per_image()];
            group.throughput(Throughput::Elements(1));
            group.bench_function(format!("jpeg_{width}x{height}_to_{size}"), |b| {
                b.iter(|| preprocessor.preprocess_into(black_box(&jpeg), &mut out).expect("decodes"))
            });
        }
    }
    group.finish();
}

fn words(random: &mut Seeded, vocabulary: &[String], count: usize) -> String {
    (0..count).map(|_| vocabulary[random.below(vocabulary.len())].as_str()).collect::<Vec<_>>().join(" ")
}

/// Words drawn by Zipf's law (the k-th most common word with probability ∝ 1/k), as in real
/// product text: a few words ("men", "cotton", "shirt") in most rows, a long tail of rare ones.
fn zipf_words(random: &mut Seeded, vocabulary: &[String], cumulative: &[f64], count: usize) -> String {
    let total = cumulative.last().copied().unwrap_or(1.0);
    (0..count)
        .map(|_| {
            let target = random.next() as f64 / u64::MAX as f64 * total;
            vocabulary[cumulative.partition_point(|&c| c < target).min(vocabulary.len() - 1)].as_str()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn vectorize(c: &mut Criterion) {
    let mut random = Seeded(11);
    // 20,000 distinct words. Uniform: products use the first 12,000 (so that some terms miss
    // the vocabulary), every word equally rare: the worst case for a vocabulary. Zipf: the
    // frequencies of real text over all 20,000.
    let lexicon: Vec<String> = (0..20_000).map(|i| format!("w{i:05}")).collect();
    let uniform: Vec<(String, String)> =
        (0..512).map(|_| (words(&mut random, &lexicon[..12_000], 8), words(&mut random, &lexicon, 80))).collect();
    let cumulative: Vec<f64> = (1..=lexicon.len())
        .scan(0.0, |sum, rank| {
            *sum += 1.0 / rank as f64;
            Some(*sum)
        })
        .collect();
    let zipf: Vec<(String, String)> = (0..512)
        .map(|_| {
            (zipf_words(&mut random, &lexicon, &cumulative, 8), zipf_words(&mut random, &lexicon, &cumulative, 80))
        })
        .collect();
    let mut group = c.benchmark_group("vectorize");
    group.throughput(Throughput::Elements(uniform.len() as u64));
    // Words, word pairs, and words with character 3-5-grams in the vocabulary or hashed into
    // buckets (`lakecat train`'s default), all TF-IDF-weighted as `lakecat train` weighs them.
    for (words, rows) in [("uniform", &uniform), ("zipf", &zipf)] {
        for (name, spec) in text_specs() {
            bench_vectorizer(&mut group, &format!("512_rows_{words}_{name}"), spec, rows);
        }
    }
    group.finish();
}

/// The vectorizer settings compared, by name; the last is `lakecat train`'s default (n-grams
/// of whitespace tokens, hashed; words and n-grams scaled apart).
fn text_specs() -> [(&'static str, TextSpec); 5] {
    let tf_idf = TextSpec { encoding: TextEncoding::TfIdf, ..TextSpec::with_defaults() };
    let char_ngrams = TextSpec { char_ngrams: Some(CharNgrams { min: 3, max: 5 }), ..tf_idf.clone() };
    let buckets = TrainingConfig::new().text.ngram_buckets.map(NgramBuckets::new);
    [
        ("1gram", tf_idf.clone()),
        ("2gram", TextSpec { max_ngram: 2, ..tf_idf }),
        ("1gram_char3-5", char_ngrams.clone()),
        ("1gram_char3-5_buckets", TextSpec { ngram_buckets: buckets, ..char_ngrams }),
        ("train_default", TrainingConfig::new().text.spec()),
    ]
}

/// Fits a vectorizer with `spec` on `rows` (title, description) and times encoding them all.
fn bench_vectorizer(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    spec: TextSpec,
    rows: &[(String, String)],
) {
    let texts = rows.iter().flat_map(|(title, description)| [title.as_str(), description.as_str()]);
    let vectorizer = TextVectorizer::fit(spec, texts, 2, 20_000).expect("vocabulary");
    group.bench_function(format!("{name}_{}_terms", vectorizer.dim()), |b| {
        // As scoring does: one tensor of 64 rows (the default `--batch-size`) reused from batch
        // to batch, each row encoded into its slice (which `encode_into` zeroes first).
        let mut tensor = vec![0.0f32; 64 * vectorizer.dim()];
        b.iter(|| {
            for batch in rows.chunks(64) {
                for ((title, description), slot) in batch.iter().zip(tensor.chunks_mut(vectorizer.dim())) {
                    vectorizer.encode_into(Some(title), Some(description), slot).expect("fits");
                }
                black_box(&tensor);
            }
        })
    });
}

fn assemble_predictions(c: &mut Criterion) {
    let mut random = Seeded(13);
    // Three levels, 7 × 6 × 4 = 168 leaves: the size of a real product taxonomy's trained part.
    let paths: Vec<Vec<String>> = (0..7)
        .flat_map(|a| {
            (0..6).flat_map(move |b| (0..4).map(move |c| split_path(&format!("L{a} > L{a}.{b} > L{a}.{b}.{c}"))))
        })
        .collect();
    let taxonomy = Taxonomy::from_paths("bench", paths).expect("taxonomy");
    let classes = taxonomy.leaves();
    let rows = 1024;
    let probabilities: Vec<f32> = (0..rows)
        .flat_map(|_| {
            let mut row: Vec<f32> = (0..classes.len()).map(|_| (random.next() % 1000) as f32 + 1.0).collect();
            row[random.below(classes.len())] *= 400.0;
            let sum: f32 = row.iter().sum();
            row.into_iter().map(move |p| p / sum)
        })
        .collect();
    let settings = PredictionSettings { top_k: 3, confidence_threshold: 0.5 };
    let mut group = c.benchmark_group("assemble_predictions");
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function(format!("{rows}_rows_{}_classes", classes.len()), |b| {
        b.iter_batched(
            || PredictionBuilder::new(&taxonomy, &classes, "bench@0", settings.clone(), rows),
            |mut builder| {
                for row in probabilities.chunks(classes.len()) {
                    builder.append(Ok(row));
                }
                builder.finish()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The same on real product text, when the public data is next to the checkout
/// (`../shared/data`, or `LAKECAT_DATA`): Flipkart's titles and long descriptions (729 products).
fn vectorize_real(c: &mut Criterion) {
    let data = std::env::var("LAKECAT_DATA").unwrap_or_else(|_| "../shared/data".into());
    let path = std::path::Path::new(&data).join("flipkart/products.csv");
    let Some(rows) = read_texts(&path) else {
        eprintln!("vectorize_real: {} not found; skipped", path.display());
        return;
    };
    let mut group = c.benchmark_group("vectorize_real");
    group.throughput(Throughput::Elements(rows.len() as u64));
    for (name, spec) in text_specs().into_iter().filter(|(name, _)| *name != "2gram") {
        bench_vectorizer(&mut group, &format!("flipkart_{}_rows_{name}", rows.len()), spec, &rows);
    }
    group.finish();
}

/// `product_name` and `description` of each row of a CSV file.
fn read_texts(path: &std::path::Path) -> Option<Vec<(String, String)>> {
    use arrow::array::AsArray;
    let mut file = std::fs::File::open(path).ok()?;
    let (schema, _) = arrow::csv::reader::Format::default().with_header(true).infer_schema(&mut file, None).ok()?;
    let file = std::fs::File::open(path).ok()?;
    let reader = arrow::csv::ReaderBuilder::new(std::sync::Arc::new(schema)).with_header(true).build(file).ok()?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.ok()?;
        let text =
            |name: &str| arrow::compute::cast(batch.column_by_name(name)?, &arrow::datatypes::DataType::Utf8).ok();
        let (titles, descriptions) = (text("product_name")?, text("description")?);
        let (titles, descriptions) = (titles.as_string::<i32>(), descriptions.as_string::<i32>());
        rows.extend(
            (0..batch.num_rows()).map(|row| (titles.value(row).to_string(), descriptions.value(row).to_string())),
        );
    }
    Some(rows)
}

criterion_group!(hot_paths, decode_and_resize, vectorize, vectorize_real, assemble_predictions);
criterion_main!(hot_paths);
