//! Pictures of a trained model as SVG text: the decision tree (laid out by `layout-rs`), a
//! feature-importance or coefficient bar chart, and the confusion matrix as a heat map.

use crate::dataset::format_number;
use crate::metrics::Metrics;
use crate::model::{FeatureEncoding, ModelBody, Task, Tree};
use crate::train::TrainedModel;
use layout::backends::svg::SVGWriter;
use layout::core::base::Orientation;
use layout::core::color::Color;
use layout::core::style::StyleAttr;
use layout::std_shapes::render::get_shape_size;
use layout::std_shapes::shapes::{Arrow, Element, ShapeKind};
use layout::topo::layout::VisualGraph;
use std::fmt::Write;

/// How deep a tree is drawn unless asked otherwise.
pub const DEFAULT_TREE_DEPTH: usize = 4;

/// Light fills for classes, in class order (repeating).
const PALETTE: [&str; 10] =
    ["#cfe2f3", "#f4cccc", "#d9ead3", "#fff2cc", "#d9d2e9", "#fce5cd", "#d0e0e3", "#ead1dc", "#e6e6e6", "#c9daf8"];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn short(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format_number(x)
    } else {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The split's condition in words: `petal_length <= 2.45`, or `colour is red or green` for a
/// category (trees split a category on its index).
fn condition(model: &TrainedModel, feature: usize, threshold: f64) -> String {
    let f = &model.features[feature];
    match &f.encoding {
        FeatureEncoding::Categorical { categories, .. } => {
            let chosen: Vec<&str> = categories
                .iter()
                .enumerate()
                .filter(|(i, _)| (*i as f64) <= threshold)
                .map(|(_, c)| c.as_str())
                .collect();
            let list = if chosen.len() > 4 {
                format!("{} or {} others", chosen[..3].join(", "), chosen.len() - 3)
            } else {
                chosen.join(" or ")
            };
            format!("{} is {list}", f.name)
        }
        FeatureEncoding::Numeric { .. } => format!("{} <= {}", f.name, short(threshold)),
    }
}

/// The first tree of the model drawn to `max_depth` levels of splits, each node with its split,
/// its training-row count and class counts (or mean value), each leaf with its prediction;
/// `None` for a model without trees.
pub fn tree_svg(model: &TrainedModel, max_depth: usize) -> Option<String> {
    let ModelBody::Trees { trees } = &model.body else { return None };
    let tree: &Tree = trees.first()?;
    let mut graph = VisualGraph::new(Orientation::TopToBottom);
    let font = 14;
    let depth = tree.depth();
    let mut notes = Vec::new();
    if trees.len() > 1 {
        notes.push(format!("Tree 1 of the {} trees in the forest.", trees.len()));
    }
    if depth > max_depth {
        notes.push(format!("Drawn to depth {max_depth} of {depth}: deeper splits are not shown (…)."));
    }
    if !notes.is_empty() {
        let shape = ShapeKind::new_box(&notes.join("\n"));
        let size = get_shape_size(Orientation::TopToBottom, &shape, font, false);
        let style = StyleAttr::new(Color::fast("white"), 0, None, 0, font);
        graph.add_node(Element::create(shape, style, Orientation::TopToBottom, size));
    }
    let mut stack = vec![(0usize, 0usize, None)];
    while let Some((at, level, parent)) = stack.pop() {
        let node = &tree.nodes[at];
        let mut lines = Vec::new();
        let cut = level >= max_depth && node.split.is_some();
        match (&node.split, cut) {
            (Some(split), false) => lines.push(condition(model, split.feature, split.threshold)),
            (Some(_), true) => lines.push("… more splits below".to_string()),
            (None, _) => {}
        }
        lines.push(format!("rows = {}", node.samples));
        let (fill, prediction) = match model.task {
            Task::Classification => {
                if !node.class_counts.is_empty() {
                    lines.push(format!(
                        "[{}]",
                        node.class_counts.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
                    ));
                }
                let class = node.output as usize;
                let majority = (0..node.class_counts.len())
                    .max_by_key(|c| (node.class_counts[*c], std::cmp::Reverse(*c)))
                    .unwrap_or(class);
                let shown = if node.split.is_none() { class } else { majority };
                (PALETTE[shown % PALETTE.len()], model.classes.get(class).cloned().unwrap_or_default())
            }
            Task::Regression => {
                lines.push(format!("mean = {}", short(node.mean)));
                ("#eeeeee", short(node.output))
            }
        };
        if node.split.is_none() {
            lines.push(format!("→ {prediction}"));
        }
        let text = lines.join("\n");
        let shape = ShapeKind::new_box(&text);
        let size = get_shape_size(Orientation::TopToBottom, &shape, font, false);
        let style = StyleAttr::new(
            Color::fast("#444444"),
            if node.split.is_none() { 2 } else { 1 },
            Some(Color::fast(fill)),
            6,
            font,
        );
        let handle = graph.add_node(Element::create(shape, style, Orientation::TopToBottom, size));
        if let Some((parent, label)) = parent {
            graph.add_edge(Arrow::simple(label), parent, handle);
        }
        if let (Some(split), false) = (&node.split, cut) {
            stack.push((split.right, level + 1, Some((handle, "no"))));
            stack.push((split.left, level + 1, Some((handle, "yes"))));
        }
    }
    let mut svg = SVGWriter::new();
    graph.do_it(false, false, false, &mut svg);
    Some(svg.finalize())
}

/// A horizontal bar chart of the model's feature importances or coefficients; for a model
/// without them (k-nearest neighbours), a short note saying so.
pub fn importance_svg(model: &TrainedModel) -> String {
    let Some(importances) = &model.importances else {
        return note_svg("k-nearest neighbours has no feature importances: it compares whole rows.");
    };
    let mut values = importances.values.clone();
    values.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    values.truncate(30);
    let label_width = values.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(4).min(40) as f64 * 7.5 + 20.0;
    let bar_width = 360.0;
    let row = 24.0;
    let top = 50.0;
    let width = label_width + bar_width + 90.0;
    let height = top + row * values.len() as f64 + 20.0;
    let max = values.iter().map(|v| v.1.abs()).fold(0.0, f64::max).max(1e-12);
    let negative = values.iter().any(|v| v.1 < 0.0);
    let zero_x = if negative { label_width + bar_width / 2.0 } else { label_width };
    let scale = if negative { bar_width / 2.0 } else { bar_width } / max;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">"#
    );
    let _ =
        write!(s, r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#, escape(&importances.measure));
    for (i, (name, v)) in values.iter().enumerate() {
        let y = top + row * i as f64;
        let w = v.abs() * scale;
        let x = if *v < 0.0 { zero_x - w } else { zero_x };
        let colour = if *v < 0.0 { "#cc4125" } else { "#3c78d8" };
        let label: String = name.chars().take(40).collect();
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{}" fill="{colour}"/><text x="{:.1}" y="{}">{}</text>"#,
            label_width - 8.0,
            y + 15.0,
            escape(&label),
            y + 3.0,
            row - 6.0,
            label_width + bar_width + 6.0,
            y + 15.0,
            short(*v)
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{zero_x}" y1="{}" x2="{zero_x}" y2="{}" stroke="#333"/></svg>"##,
        top - 4.0,
        height - 16.0
    );
    s
}

/// The confusion matrix as a heat map (rows: true class, columns: predicted class; darker is
/// more rows); for a regression model, a note saying there is none.
pub fn confusion_svg(model: &TrainedModel) -> String {
    let Metrics::Classification { confusion, labels, .. } = &model.metrics else {
        return note_svg("A model that predicts numbers has no confusion matrix: see R² and MAE.");
    };
    let k = labels.len();
    let cell = if k > 12 { 32.0 } else { 56.0 };
    let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1).min(24) as f64 * 8.0 + 20.0;
    let left = label_width + 30.0;
    let top = 70.0 + label_width;
    // Wide enough for the title (about 8.5 px per character at 15 px bold).
    let width = (left + cell * k as f64 + 20.0).max(300.0);
    let height = top + cell * k as f64 + 20.0;
    let max = confusion.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">"#
    );
    let _ =
        write!(s, r#"<text x="10" y="22" font-size="15" font-weight="bold">Confusion matrix (held-out rows)</text>"#);
    let _ =
        write!(s, r#"<text x="{}" y="45" text-anchor="middle">predicted class</text>"#, left + cell * k as f64 / 2.0);
    let _ = write!(
        s,
        r#"<text x="14" y="{}" text-anchor="middle" transform="rotate(-90 14 {})">true class</text>"#,
        top + cell * k as f64 / 2.0,
        top + cell * k as f64 / 2.0
    );
    for (i, label) in labels.iter().enumerate() {
        let label: String = label.chars().take(24).collect();
        let x = left + cell * (i as f64 + 0.5);
        let _ = write!(
            s,
            r#"<text x="{x}" y="{}" transform="rotate(-45 {x} {})">{}</text>"#,
            top - 8.0,
            top - 8.0,
            escape(&label)
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 8.0,
            top + cell * (i as f64 + 0.5) + 5.0,
            escape(&label)
        );
    }
    for (t, row) in confusion.iter().enumerate() {
        for (p, count) in row.iter().enumerate() {
            let share = *count as f64 / max;
            // White to dark blue.
            let (r, g, b) = (
                (255.0 - share * (255.0 - 8.0)) as u8,
                (255.0 - share * (255.0 - 48.0)) as u8,
                (255.0 - share * (255.0 - 107.0)) as u8,
            );
            let text = if share > 0.5 { "white" } else { "black" };
            let (x, y) = (left + cell * p as f64, top + cell * t as f64);
            let _ = write!(
                s,
                r##"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="#{r:02x}{g:02x}{b:02x}" stroke="#999"/><text x="{}" y="{}" text-anchor="middle" fill="{text}">{count}</text>"##,
                x + cell / 2.0,
                y + cell / 2.0 + 5.0
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn note_svg(text: &str) -> String {
    let width = text.chars().count() as f64 * 7.5 + 40.0;
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="60" viewBox="0 0 {width} 60" font-family="sans-serif" font-size="14"><text x="20" y="35">{}</text></svg>"#,
        escape(text)
    )
}
