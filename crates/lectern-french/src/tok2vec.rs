//! thinc's forward pass for spaCy's `Tok2Vec.v2` (MultiHashEmbed + MaxoutWindowEncoder) and the
//! `Tagger.v2` output layer, from the weights in a thinc model file.

use std::path::Path;

use rmpv::Value;

use crate::features::FEATURES;
use crate::hash::hash_key;
use crate::msgpack::{self, bad};
use crate::FrenchError;

/// Outputs computed together in the dense kernel (one cache line of weights).
const LANES: usize = 16;

/// A hashed embedding table (thinc HashEmbed) for one feature column.
struct HashEmbed {
    table: Vec<f32>,
    rows: usize,
    seed: u32,
    column: usize,
}

/// A dense layer computing `nO * nP` values, reduced by max over the `nP` pieces (thinc Maxout).
/// A Softmax output layer is the same with one piece.
pub struct Maxout {
    /// The weights transposed: `inputs x (outputs * pieces)`.
    weights_t: Vec<f32>,
    bias: Vec<f32>,
    outputs: usize,
    pieces: usize,
    inputs: usize,
}

struct LayerNorm {
    gain: Vec<f32>,
    bias: Vec<f32>,
}

/// A tok2vec network, optionally ending in the tagger's linear output layer.
pub struct Network {
    embeds: Vec<HashEmbed>,
    width: usize,
    reduce: (Maxout, LayerNorm),
    blocks: Vec<(Maxout, LayerNorm)>,
    output: Option<Maxout>,
}

/// The decoded layers of a model file, in thinc's walk order.
#[derive(Default)]
struct Layers {
    embeds: Vec<HashEmbed>,
    maxouts: Vec<Maxout>,
    norms: Vec<LayerNorm>,
    softmax: Option<Maxout>,
}

impl Network {
    /// Loads a tok2vec (`tok2vec/model`) or a full tagger with its own tok2vec (`senter/model`).
    pub fn load(bytes: &[u8], path: &Path) -> Result<Network, FrenchError> {
        let layers = read_layers(bytes, path)?;
        Network::assemble(layers, path)
    }

    /// Loads only the output layer of a tagger that listens to a shared tok2vec.
    pub fn load_output(bytes: &[u8], path: &Path) -> Result<Maxout, FrenchError> {
        read_layers(bytes, path)?.softmax.ok_or_else(|| bad(path, "no softmax layer"))
    }

    fn assemble(layers: Layers, path: &Path) -> Result<Network, FrenchError> {
        let Layers { mut embeds, maxouts, norms, softmax } = layers;
        if embeds.is_empty() || maxouts.is_empty() || maxouts.len() != norms.len() {
            return Err(bad(path, "expected hashembed, maxout and layernorm layers"));
        }
        embeds.sort_by_key(|e| e.column);
        if embeds.iter().any(|e| e.column >= FEATURES) {
            return Err(bad(path, "a hashembed reads an unknown feature column"));
        }
        let width = embeds[0].table.len() / embeds[0].rows.max(1);
        if embeds.iter().any(|e| e.table.len() != e.rows * width || width == 0) {
            return Err(bad(path, "hashembed tables differ in width"));
        }
        let mut pairs = maxouts.into_iter().zip(norms);
        let reduce = pairs.next().ok_or_else(|| bad(path, "no maxout layer"))?;
        let blocks: Vec<_> = pairs.collect();
        let concat = width * embeds.len();
        check_layer(&reduce.0, concat, path)?;
        for (m, n) in &blocks {
            check_layer(m, reduce.0.outputs * 3, path)?;
            if n.gain.len() != m.outputs || m.outputs != reduce.0.outputs {
                return Err(bad(path, "layer widths do not agree"));
            }
        }
        if let Some(out) = &softmax {
            check_layer(out, reduce.0.outputs, path)?;
        }
        Ok(Network { embeds, width, reduce, blocks, output: softmax })
    }

    /// Number of feature columns the network reads.
    pub fn columns(&self) -> usize {
        self.embeds.len()
    }

    /// The hidden width of the encoder's output.
    pub fn hidden(&self) -> usize {
        self.reduce.0.outputs
    }

    /// Runs the tok2vec over one doc; `features[t * FEATURES + c]` is token t's column c.
    /// Returns `tokens x hidden` values.
    pub fn encode(&self, features: &[u64], tokens: usize) -> Vec<f32> {
        let columns = self.columns();
        let concat = self.width * columns;
        let hidden = self.hidden();
        let mut embedded = vec![0f32; tokens * concat];
        for t in 0..tokens {
            for (c, embed) in self.embeds.iter().enumerate() {
                let key = features.get(t * FEATURES + embed.column).copied().unwrap_or(0);
                let out = &mut embedded[t * concat + c * self.width..][..self.width];
                embed.add_rows(key, out);
            }
        }
        let mut x = vec![0f32; tokens * hidden];
        self.reduce.0.forward_rows(&embedded, &mut x);
        for row in x.chunks_exact_mut(hidden) {
            self.reduce.1.forward(row);
        }
        let mut windows = vec![0f32; tokens * 3 * hidden];
        let mut delta = vec![0f32; tokens * hidden];
        for (maxout, norm) in &self.blocks {
            for (t, window) in windows.chunks_exact_mut(3 * hidden).enumerate() {
                fill_window(&x, t, tokens, hidden, window);
            }
            maxout.forward_rows(&windows, &mut delta);
            for (row, d) in x.chunks_exact_mut(hidden).zip(delta.chunks_exact_mut(hidden)) {
                norm.forward(d);
                for (v, d) in row.iter_mut().zip(d.iter()) {
                    *v += d;
                }
            }
        }
        x
    }

    /// The best output class of each token (argmax of the output layer's scores).
    pub fn classify(&self, features: &[u64], tokens: usize) -> Vec<usize> {
        let hidden = self.encode(features, tokens);
        match &self.output {
            Some(out) => out.argmax_rows(&hidden),
            None => vec![0; tokens],
        }
    }
}

impl Maxout {
    /// Argmax over the outputs for each row of `rows` (each `inputs` wide).
    pub fn argmax_rows(&self, rows: &[f32]) -> Vec<usize> {
        let count = rows.len() / self.inputs.max(1);
        let mut scores = vec![0f32; count * self.outputs];
        self.forward_rows(rows, &mut scores);
        scores.chunks_exact(self.outputs.max(1)).map(argmax).collect()
    }

    pub fn inputs(&self) -> usize {
        self.inputs
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Runs the layer on each row of `input` (`inputs` wide) into `out` (`outputs` wide),
    /// four rows at a time so that each weight row is read once per four tokens.
    fn forward_rows(&self, input: &[f32], out: &mut [f32]) {
        let rows = input.len() / self.inputs.max(1);
        let width = self.outputs * self.pieces;
        let mut scores = vec![0f32; 4 * width];
        let mut first = 0;
        while first < rows {
            let count = (rows - first).min(4);
            let block = &input[first * self.inputs..(first + count) * self.inputs];
            self.scores(block, count, &mut scores);
            for r in 0..count {
                let out_row = &mut out[(first + r) * self.outputs..(first + r + 1) * self.outputs];
                let row_scores = &scores[r * width..(r + 1) * width];
                for (slot, pieces) in out_row.iter_mut().zip(row_scores.chunks_exact(self.pieces)) {
                    *slot = pieces.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                }
            }
            first += count;
        }
    }

    /// Affine scores of `count` (at most 4) input rows into `scores[r * nO * nP + k]`, with
    /// AVX2 when the CPU has it (the same operations in the same order, so the same results).
    fn scores(&self, block: &[f32], count: usize, scores: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { self.scores_avx2(block, count, scores) };
            return;
        }
        self.scores_generic(block, count, scores);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn scores_avx2(&self, block: &[f32], count: usize, scores: &mut [f32]) {
        self.scores_generic(block, count, scores);
    }

    /// For each group of eight outputs, four accumulators run over the transposed weights.
    // Index loops here keep the accumulators in registers (the hot loop of the port).
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn scores_generic(&self, block: &[f32], count: usize, scores: &mut [f32]) {
        let n = self.inputs;
        let width = self.outputs * self.pieces;
        let row = |r: usize| &block[r.min(count - 1) * n..(r.min(count - 1) + 1) * n];
        let x = [row(0), row(1), row(2), row(3)];
        let mut k = 0;
        while k + LANES <= width {
            let mut acc = [[0f32; LANES]; 4];
            for r in 0..4 {
                acc[r].copy_from_slice(&self.bias[k..k + LANES]);
            }
            for i in 0..n {
                let w: &[f32; LANES] = match self.weights_t[i * width + k..i * width + k + LANES].try_into() {
                    Ok(w) => w,
                    Err(_) => continue,
                };
                let xs = [x[0][i], x[1][i], x[2][i], x[3][i]];
                for r in 0..4 {
                    for j in 0..LANES {
                        acc[r][j] += xs[r] * w[j];
                    }
                }
            }
            for (r, lanes) in acc.iter().enumerate().take(count) {
                scores[r * width + k..r * width + k + LANES].copy_from_slice(lanes);
            }
            k += LANES;
        }
        for k in k..width {
            for r in 0..count {
                let mut v = self.bias[k];
                for i in 0..n {
                    v += x[r][i] * self.weights_t[i * width + k];
                }
                scores[r * width + k] = v;
            }
        }
    }
}

impl LayerNorm {
    /// thinc LayerNorm: `(x - mean) / sqrt(var + 1e-8) * G + b`.
    fn forward(&self, x: &mut [f32]) {
        let n = x.len() as f32;
        let mean = x.iter().sum::<f32>() / n;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n + 1e-8;
        let scale = 1.0 / var.sqrt();
        for ((v, g), b) in x.iter_mut().zip(&self.gain).zip(&self.bias) {
            *v = (*v - mean) * scale * g + b;
        }
    }
}

impl HashEmbed {
    /// Adds the four hashed rows of `key` to `out`.
    fn add_rows(&self, key: u64, out: &mut [f32]) {
        let width = out.len();
        for h in hash_key(key, self.seed) {
            let row = h as usize % self.rows;
            let values = &self.table[row * width..(row + 1) * width];
            for (o, v) in out.iter_mut().zip(values) {
                *o += v;
            }
        }
    }
}

/// `[x[t-1], x[t], x[t+1]]` with zeros past the doc's ends (thinc expand_window, size 1).
fn fill_window(x: &[f32], t: usize, tokens: usize, hidden: usize, window: &mut [f32]) {
    window.fill(0.0);
    if t > 0 {
        window[..hidden].copy_from_slice(&x[(t - 1) * hidden..t * hidden]);
    }
    window[hidden..2 * hidden].copy_from_slice(&x[t * hidden..(t + 1) * hidden]);
    if t + 1 < tokens {
        window[2 * hidden..].copy_from_slice(&x[(t + 1) * hidden..(t + 2) * hidden]);
    }
}

fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

fn check_layer(layer: &Maxout, inputs: usize, path: &Path) -> Result<(), FrenchError> {
    if layer.inputs != inputs {
        return Err(bad(path, format!("a layer takes {} inputs, expected {inputs}", layer.inputs)));
    }
    Ok(())
}

/// Walks the model file's `nodes`/`attrs`/`params` lists and decodes the layers we know.
fn read_layers(bytes: &[u8], path: &Path) -> Result<Layers, FrenchError> {
    let value = msgpack::decode(bytes, path)?;
    let list = |name: &str| match msgpack::get(&value, name) {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(bad(path, format!("no {name} list"))),
    };
    let (nodes, attrs, params) = (list("nodes")?, list("attrs")?, list("params")?);
    if nodes.len() != params.len() || nodes.len() != attrs.len() {
        return Err(bad(path, "nodes, attrs and params differ in length"));
    }
    let mut layers = Layers::default();
    for ((node, attr), param) in nodes.iter().zip(attrs).zip(params) {
        let name = msgpack::get(node, "name").and_then(msgpack::as_str).unwrap_or("");
        let array = |key: &str| match msgpack::get(param, key) {
            Some(v) => msgpack::array(v, path, &format!("{name}.{key}")),
            None => Err(bad(path, format!("{name} has no {key}"))),
        };
        match name {
            "hashembed" => {
                let table = array("E")?;
                let [rows, _] = table.shape[..] else {
                    return Err(bad(path, "hashembed E is not 2-d"));
                };
                layers.embeds.push(HashEmbed {
                    table: table.data,
                    rows: rows.max(1),
                    seed: attr_int(attr, "seed", path)? as u32,
                    column: attr_int(attr, "column", path)? as usize,
                });
            }
            "maxout" => layers.maxouts.push(dense(array("W")?, array("b")?, path)?),
            "softmax" => layers.softmax = Some(dense(array("W")?, array("b")?, path)?),
            "layernorm" => {
                let (gain, bias) = (array("G")?.data, array("b")?.data);
                if gain.len() != bias.len() {
                    return Err(bad(path, "layernorm G and b differ"));
                }
                layers.norms.push(LayerNorm { gain, bias });
            }
            _ => {}
        }
    }
    Ok(layers)
}

/// A Maxout (`W: nO x nP x nI`) or Softmax (`W: nO x nI`) layer.
fn dense(w: msgpack::Array, b: msgpack::Array, path: &Path) -> Result<Maxout, FrenchError> {
    let (outputs, pieces, inputs) = match w.shape[..] {
        [o, p, i] => (o, p, i),
        [o, i] => (o, 1, i),
        _ => return Err(bad(path, "dense weights are not 2-d or 3-d")),
    };
    if b.data.len() != outputs * pieces || pieces == 0 {
        return Err(bad(path, "dense bias does not match its weights"));
    }
    let width = outputs * pieces;
    let mut weights_t = vec![0f32; w.data.len()];
    for (k, row) in w.data.chunks_exact(inputs.max(1)).enumerate() {
        for (i, v) in row.iter().enumerate() {
            weights_t[i * width + k] = *v;
        }
    }
    Ok(Maxout { weights_t, bias: b.data, outputs, pieces, inputs })
}

/// An attribute of a node: thinc stores each as msgpack bytes.
fn attr_int(attrs: &Value, name: &str, path: &Path) -> Result<u64, FrenchError> {
    let Some(Value::Binary(bytes)) = msgpack::get(attrs, name) else {
        return Err(bad(path, format!("no {name} attribute")));
    };
    msgpack::decode(bytes, path)?.as_u64().ok_or_else(|| bad(path, format!("{name} is not an integer")))
}
