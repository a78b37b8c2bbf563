//! The KPI report in a real browser: headless Chromium opens the page the aggregate stage wrote,
//! offline, takes a screenshot, and a checker script added to a copy of the page reports what
//! the browser laid out: every chart an SVG with visible, coloured data shapes, nothing fetched,
//! and nothing on the console but the checker's own line. Skipped (with a message saying so)
//! only where Chromium is not installed; `scripts/setup.sh` installs Debian's `chromium`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::lake;

/// Chromium from `CHROMIUM`, else the first of the usual names on PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(path.into());
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Runs headless Chromium (offline, a fresh profile) with `args` on `page`; (stdout, stderr).
fn run_chromium(browser: &Path, profile: &Path, args: &[&str], page: &Path) -> (String, String) {
    let out = Command::new("timeout")
        .arg("120")
        .arg(browser)
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
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "chromium failed:\n{stderr}");
    (stdout, stderr)
}

/// Added before `</body>` of a copy of the page: what the browser drew, into `data-check`.
const CHECKER: &str = r##"<script>
(function () {
  var palette = ["#1F77B4","#FF7F0E","#2CA02C","#D62728","#9467BD","#8C564B","#E377C2","#7F7F7F","#BCBD22","#17BECF"];
  var charts = [];
  document.querySelectorAll("figure.chart").forEach(function (f) {
    var svg = f.querySelector("svg");
    var box = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
    var shapes = 0;
    f.querySelectorAll("polyline, path, rect, circle").forEach(function (e) {
      var paint = ((e.getAttribute("fill") || "") + " " + (e.getAttribute("stroke") || "")).toUpperCase();
      var b = e.getBBox();
      if ((b.width > 0 || b.height > 0) && palette.some(function (p) { return paint.indexOf(p) >= 0; })) shapes++;
    });
    charts.push({ id: f.id, width: box.width, height: box.height, shapes: shapes });
  });
  document.body.setAttribute("data-check", JSON.stringify({
    charts: charts,
    resources: performance.getEntriesByType("resource").length
  }));
  console.log("shoplake-checker-ran");
})();
</script></body>"##;

#[test]
fn chromium_renders_every_chart_of_the_report_offline() {
    let Some(browser) = chromium() else {
        eprintln!(
            "SKIPPED chromium_renders_every_chart_of_the_report_offline: no Chromium found (set CHROMIUM, or install Debian's `chromium`: scripts/setup.sh does)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (input, lake_dir) = (dir.path().join("in"), dir.path().join("lake"));
    // Up to today, so the page has a partial day.
    let today = chrono::Utc::now().date_naive().to_string();
    let (ok, _, stderr) = lake(&[
        "generate",
        "--out",
        input.to_str().unwrap(),
        "--customers",
        "60",
        "--orders",
        "500",
        "--end-date",
        &today,
        "--days",
        "12",
    ]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = lake(&[
        "run",
        "--lake",
        lake_dir.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let page = lake_dir.join("gold/report/index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains(r#"<tr class="partial">"#), "today is marked");

    // What the browser laid out, from the checker's attribute in the DOM it dumps.
    let checked = dir.path().join("checked.html");
    std::fs::write(&checked, html.replace("</body>", CHECKER)).unwrap();
    let (dom, log) = run_chromium(
        &browser,
        &dir.path().join("profile-1"),
        &["--enable-logging=stderr", "--v=0", "--dump-dom"],
        &checked,
    );
    let attr = dom
        .split(r#"data-check=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("the checker did not run:\n{log}"));
    let check: serde_json::Value =
        serde_json::from_str(&attr.replace("&quot;", "\"").replace("&amp;", "&")).unwrap();
    let charts = check["charts"].as_array().unwrap();
    assert_eq!(charts.len(), 8, "{check}");
    for chart in charts {
        assert!(
            chart["width"].as_f64() > Some(100.0) && chart["height"].as_f64() > Some(100.0),
            "{chart}"
        );
        // 12 days of data: a marker or bar segment per day at least, plus the legend.
        assert!(
            chart["shapes"].as_u64() >= Some(12),
            "nothing drawn: {chart}"
        );
    }
    assert_eq!(check["resources"], 0, "the page fetched something: {check}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(
        console.iter().any(|l| l.contains("shoplake-checker-ran")),
        "the console is not captured: {log}"
    );
    assert_eq!(console.len(), 1, "console messages: {console:#?}");

    // The page as a person sees it.
    let shot = dir.path().join("report.png");
    run_chromium(
        &browser,
        &dir.path().join("profile-2"),
        &[
            "--window-size=1280,2000",
            &format!("--screenshot={}", shot.display()),
        ],
        &page,
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    // A blank 1280×2000 page compresses to a few KiB; one with eight charts does not.
    assert!(png.len() > 60_000, "{} bytes", png.len());
    if let Some(keep) = std::env::var_os("SHOPLAKE_REPORT_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
