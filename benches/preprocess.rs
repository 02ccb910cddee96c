//! Image preprocessing throughput (decode + resize + normalize into the input tensor) on real
//! product images, on one thread and on every core. `benches/compare_preprocess.sh` runs it next
//! to the Pillow + numpy reference (benches/preprocess_reference.py) on the same files.
//!
//!   cargo bench --profile dev --bench preprocess -- [--images DIR] [--size 224] [--rounds 3]

use std::path::PathBuf;
use std::time::Instant;

use lakecat_core::{ImagePreprocessor, ImageSpec};

fn main() {
    let mut images_dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/sample/fashion/images"));
    let mut size = 224u32;
    let mut rounds = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--images" => images_dir = PathBuf::from(args.next().expect("--images DIR")),
            "--size" => size = args.next().and_then(|v| v.parse().ok()).expect("--size N"),
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).expect("--rounds N"),
            _ => {} // cargo bench passes --bench
        }
    }
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&images_dir).expect("images dir").flatten().map(|e| e.path()).collect();
    files.sort();
    let images: Vec<Vec<u8>> = files.iter().map(|path| std::fs::read(path).expect("image")).collect();
    let inputs: Vec<Option<&[u8]>> = images.iter().map(|bytes| Some(bytes.as_slice())).collect();
    let preprocessor = ImagePreprocessor::new(ImageSpec::imagenet(size)).expect("spec");
    let batch = 64;
    let mut tensor = vec![0.0f32; batch * preprocessor.spec().values_per_image()];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for threads in [1, cores] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
        let mut best = f64::MAX;
        for _ in 0..rounds {
            let started = Instant::now();
            pool.install(|| {
                for chunk in inputs.chunks(batch) {
                    let out = &mut tensor[..chunk.len() * preprocessor.spec().values_per_image()];
                    let results = preprocessor.preprocess_batch(chunk, out);
                    assert!(results.iter().all(Result::is_ok));
                }
            });
            best = best.min(started.elapsed().as_secs_f64());
        }
        println!(
            "{{\"impl\": \"lakecat\", \"threads\": {threads}, \"images\": {}, \"size\": {size}, \"seconds\": {best:.4}, \"images_per_s\": {:.1}}}",
            images.len(),
            images.len() as f64 / best
        );
    }
}
