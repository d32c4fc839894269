//! The HTML report in headless Chromium: one chart series per keyword, visible in a screenshot.

use std::{path::Path, process::Command};

use super::{demo_json, service_env, temp_dir, text};

/// Series colours of the page, as RGB: the first three of `render::COLOURS`.
fn series_colours() -> Vec<[u8; 3]> {
    cilvest_workers::jobs::demo::render::COLOURS[..3]
        .iter()
        .map(|hex| {
            let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex colour");
            [byte(1), byte(3), byte(5)]
        })
        .collect()
}

fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    let binary = service_env("CILVEST_CHROMIUM", "tools");
    Command::new(binary)
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
        .output()
        .expect("run chromium")
}

#[test]
fn the_html_report_renders_its_chart_in_headless_chromium() {
    let dir = temp_dir("cilvest-demo-html");
    let page = dir.join("report.html");
    let report = demo_json(&[
        "--tweets",
        "3000",
        "--days",
        "5",
        "--html",
        page.to_str().expect("utf-8"),
    ]);
    let url = format!("file://{}", page.display());

    let dom = chromium(&dir.join("profile-dom"), &["--dump-dom", &url]);
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(dom.contains("<svg id=\"daily-chart\""), "no chart in the rendered DOM");
    let data = dom.find("id=\"data\"").expect("the data line");
    assert!(
        dom.find("<h1>").is_some_and(|h1| data < h1) && dom.contains("Data: generated, not real posts"),
        "the page says first that the data is generated"
    );
    for keyword in ["saham", "reksadana", "sukuk"] {
        assert_eq!(
            dom.matches(&format!("<path id=\"series-{keyword}\"")).count(),
            1,
            "{keyword}"
        );
    }
    assert_eq!(dom.matches("<path id=\"series-").count(), 3);
    for day in report["days"].as_array().expect("days") {
        assert!(dom.contains(&format!(">{}</text>", text(day))), "x axis label {day}");
    }
    assert_eq!(dom.matches("class=\"y-label\"").count(), 5, "y axis labels");
    assert!(dom.contains(">mentions</text>"));
    // Per local hour: one path per keyword, 24 hours labelled every other hour.
    assert!(dom.contains("<svg id=\"hourly-chart\""), "no hourly chart");
    for keyword in ["saham", "reksadana", "sukuk"] {
        assert_eq!(
            dom.matches(&format!("<path id=\"hourly-{keyword}\"")).count(),
            1,
            "{keyword}"
        );
    }
    assert_eq!(dom.matches("class=\"x-label hourly\"").count(), 12, "hour labels");
    assert!(dom.contains(">00</text>") && dom.contains(">22</text>"));
    // The most active authors: one bar each, labelled with the name, as in the report's top-users mart.
    assert!(dom.contains("<svg id=\"top-authors-chart\""), "no top-authors chart");
    let top = report["marts"]["topUsers"].as_array().expect("top users");
    assert!(!top.is_empty());
    assert_eq!(dom.matches("class=\"bar\"").count(), top.len());
    for user in top {
        let name = text(&user["username"]);
        assert!(dom.contains(&format!("data-label=\"{name}\"")), "bar for {name}");
    }

    let screenshot = dir.join("report.png");
    let shot = chromium(
        &dir.join("profile-shot"),
        &[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1200,900",
            &url,
        ],
    );
    assert!(shot.status.success(), "{}", String::from_utf8_lossy(&shot.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&screenshot).expect("screenshot"),
    ));
    let mut reader = decoder.read_info().expect("png header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("png size")];
    let info = reader.next_frame(&mut pixels).expect("png frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    // The chart is the first thing below the title: the top 700 rows hold it, the legend and tables come after.
    let rows = (info.height as usize).min(700);
    for colour in series_colours() {
        let count = (0..rows * info.width as usize)
            .map(|i| &pixels[i * channels..i * channels + 3])
            .filter(|px| px.iter().zip(colour).all(|(a, b)| a.abs_diff(b) <= 24))
            .count();
        assert!(
            count > 500,
            "series colour {colour:?}: only {count} pixels in the chart area"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
