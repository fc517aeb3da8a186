//! The `zumik` binary: see `zumik --help`.

/// mimalloc: the router allocates small, short-lived ids and vectors per event; glibc's
/// allocator degrades on that pattern in a long-running process (measured in `benches/`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match zumik::cli::run() {
        Ok(code) => code,
        // A closed stdout (`zumik decide … | head`) is the reader's choice, not an error.
        Err(e) if e.chain().any(is_broken_pipe) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zumik: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
