//! The `zumik` binary: see `zumik --help`.

fn main() -> std::process::ExitCode {
    match zumik::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zumik: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
