//! The `zumik` binary: see `zumik --help`.

/// mimalloc: the router allocates small, short-lived ids and vectors per event; glibc's
/// allocator degrades on that pattern in a long-running process (measured in `benches/`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match zumik::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zumik: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
