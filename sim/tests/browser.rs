//! The HTML report in a real browser: headless Chromium loads the page the binary writes
//! with no console message at all (the page has no script and may load nothing), and a
//! screenshot of it shows the tables and the charts, 429s included.
//!
//! Needs Chromium (Debian's `chromium`; `.ci/chromium.sh` installs it). Without it the
//! test fails when `CI=true` and skips with a message otherwise. `CHROMIUM=/path` picks
//! another binary.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The longest one browser run may take before `timeout` ends it.
const BROWSER_TIMEOUT_S: &str = "120";

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .chain([PathBuf::from("/usr/bin/chromium")])
        .find(|p| p.is_file())
}

/// Runs Chromium headless on `page` with `mode` (`--dump-dom`, `--screenshot=…`), in a
/// fresh profile, with no network beyond the page and the console logged to stderr;
/// `timeout` bounds it.
fn browse(chromium: &Path, profile: &Path, page: &Path, mode: &[&str]) -> Output {
    let out = Command::new("timeout")
        .arg(BROWSER_TIMEOUT_S)
        .arg(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(mode)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium starts");
    assert!(
        out.status.success(),
        "chromium {mode:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The console messages (errors, warnings, CSP refusals, uncaught exceptions) Chromium
/// logged for the page.
fn console_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .map(str::to_owned)
        .collect()
}

/// RGB pixels of a PNG: (width, height, pixels).
fn decode_png(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let mut decoder = png::Decoder::new(std::fs::File::open(path).expect("the screenshot exists"));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("one frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "a colour screenshot: {:?}", info.color_type);
    let pixels = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, pixels)
}

/// Pixels within `tolerance` of `rgb` on every channel.
fn count_near(pixels: &[[u8; 3]], rgb: [u8; 3], tolerance: u8) -> usize {
    pixels
        .iter()
        .filter(|p| (0..3).all(|c| p[c].abs_diff(rgb[c]) <= tolerance))
        .count()
}

/// `rgb` at `alpha` over white, as the charts fill areas.
fn over_white(rgb: [u8; 3], alpha: f64) -> [u8; 3] {
    rgb.map(|c| (f64::from(c) * alpha + 255.0 * (1.0 - alpha)).round() as u8)
}

#[test]
fn the_html_report_loads_clean_and_shows_its_charts_in_chromium() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but chromium is missing: .ci/chromium.sh installs it"
        );
        eprintln!("SKIPPED: chromium not found (apt-get install chromium, or set CHROMIUM)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // The detector works: a page with a script error is caught.
    let control = d.join("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>control</title></head>\
         <body><script>not_defined_anywhere();</script></body></html>",
    )
    .unwrap();
    let out = browse(
        &chromium,
        &d.join("profile-control"),
        &control,
        &["--dump-dom"],
    );
    let seen = console_lines(&out.stderr);
    assert!(
        seen.iter().any(|l| l.contains("not_defined_anywhere")),
        "the console detector missed a script error; chromium's stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The report, as the binary writes it beside its charts: the built-in day, whose
    // flash crowd meets 429s and whose disk spike runs 60 pressure sweeps.
    let o = Command::new(env!("CARGO_BIN_EXE_backstop-sim"))
        .args([
            "run",
            "--scenario",
            "day",
            "--seed",
            "1",
            "--duration",
            "24h",
        ])
        .args(["--rate", "0.05", "--quiet", "--charts"])
        .arg(d.join("charts"))
        .output()
        .expect("backstop-sim runs");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let page = d.join("charts").join("report.html");
    let html = std::fs::read_to_string(&page).expect("report.html beside the charts");
    assert_eq!(html.matches("<svg").count(), 3);

    let out = browse(&chromium, &d.join("profile-dom"), &page, &["--dump-dom"]);
    let console = console_lines(&out.stderr);
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert_eq!(dom.matches("<svg").count(), 3, "three charts in the DOM");
    assert_eq!(dom.matches("<table").count(), 4, "four tables in the DOM");
    assert!(dom.contains("All 6 invariants held"));

    let shot = d.join("report.png");
    let out = browse(
        &chromium,
        &d.join("profile-shot"),
        &page,
        &[
            "--window-size=1100,2500",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let console = console_lines(&out.stderr);
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );
    let (w, h, pixels) = decode_png(&shot);
    assert_eq!((w, h), (1100, 2500));
    let background = [[0xf6, 0xf7, 0xf9], [0xff, 0xff, 0xff]];
    let ink = pixels.iter().filter(|p| !background.contains(p)).count();
    let colours: HashSet<[u8; 3]> = pixels.iter().copied().collect();
    assert!(
        ink * 10 > pixels.len(),
        "at most a tenth of the page is drawn on: {ink} of {} pixels",
        pixels.len()
    );
    assert!(colours.len() >= 200, "only {} colours", colours.len());
    // Each series is on screen in its own colour (the values `charts.rs` draws with).
    let series = [
        ("admitted line", [44, 160, 44], 400),
        ("503 line", [31, 119, 180], 400),
        ("queue depth area", over_white([31, 119, 180], 0.45), 20_000),
        ("429 area", over_white([214, 39, 40], 0.45), 300),
        ("pressure sweep ticks", [148, 103, 189], 200),
        ("disk used line", [140, 86, 75], 1_000),
    ];
    for (name, rgb, at_least) in series {
        let n = count_near(&pixels, rgb, 10);
        assert!(
            n >= at_least,
            "{name}: {n} pixels near {rgb:?}, expected at least {at_least}"
        );
    }
}
