//! The `lakecat` command line.

mod cli;

fn main() -> std::process::ExitCode {
    tune_malloc();
    let (args, command) = cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Each cause once: DataFusion's "External error: X" has X as its source again.
            let mut message = error.to_string();
            for cause in error.chain().skip(1) {
                let text = cause.to_string();
                if !message.contains(&text) {
                    message = format!("{message}: {text}");
                }
            }
            // A store's answer may quote a credential: never print one.
            eprintln!("error: {}", cli::name_flags(&lakecat::storage::redact(&message), &command));
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc keeps freed memory for reuse, and with DataFusion, rayon and ONNX Runtime threads
/// each freeing other threads' image and Arrow buffers its heaps fragment: peak RSS grew with
/// the number of rows scanned although live memory did not (a 100k-row refresh: 614 MiB by
/// default, 300 MiB with two arenas, 202 MiB with two arenas and large blocks mapped directly,
/// at the same speed; benches/refresh.sh). So: two arenas, and blocks of 64 KiB or more (image
/// bytes, decoded pixels, Arrow buffers) from mmap, returned to the system when freed. The
/// usual `MALLOC_ARENA_MAX` / `MALLOC_MMAP_THRESHOLD_` environment variables still win.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024) };
        }
    }
}
