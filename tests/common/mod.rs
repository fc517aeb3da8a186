//! Headless Chromium for tests that check pages in a real browser (the gate report, the status
//! page).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn chromium() -> PathBuf {
    const HOW: &str = "Run scripts/setup, which installs Debian's `chromium` package (or point ZUMIK_CHROMIUM at a \
                       Chromium/Chrome binary).";
    if let Some(p) = std::env::var_os("ZUMIK_CHROMIUM") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "ZUMIK_CHROMIUM={} is not a file. {HOW}",
            p.display()
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "headless Chromium is needed to check that the gate report renders in a real browser, and none \
         was found (looked for chromium, chromium-browser, google-chrome in PATH and /usr/bin). {HOW}"
    );
}

/// Runs headless Chromium on a URL and returns its stdout; fails after a minute.
pub fn run_chromium(profile: &Path, extra: &[&str], url: &str) -> String {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
