//! A small multilayer perceptron with ReLU hidden layers and a softmax output, and its trainer
//! (mini-batch Adam with dropout). Inputs are standardised with the training set's per-input
//! mean and deviation, which travel with the weights.

use super::VoiceError;
use super::dsp::Rng;

/// Bounds on what a model file may declare, so a corrupt file cannot ask for gigabytes.
pub const LAYER_WIDTH_MAX: usize = 4_096;
pub const LAYERS_MAX: usize = 8;

#[derive(Debug, Clone, PartialEq)]
struct Dense {
    inputs: usize,
    outputs: usize,
    /// `outputs` rows of `inputs` weights.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl Dense {
    fn new(inputs: usize, outputs: usize, rng: &mut Rng) -> Self {
        // He initialisation for ReLU layers.
        let scale = (2.0 / inputs as f32).sqrt();
        Dense {
            inputs,
            outputs,
            weights: (0..inputs * outputs)
                .map(|_| rng.normal() * scale)
                .collect(),
            bias: vec![0.0; outputs],
        }
    }

    fn forward(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        for o in 0..self.outputs {
            let row = &self.weights[o * self.inputs..(o + 1) * self.inputs];
            out.push(self.bias[o] + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>());
        }
    }
}

/// The network.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    mean: Vec<f32>,
    deviation: Vec<f32>,
    layers: Vec<Dense>,
}

/// Trainer settings.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub learning_rate: f32,
    pub batch: usize,
    pub dropout: f32,
    pub weight_decay: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            learning_rate: 1e-3,
            batch: 32,
            dropout: 0.1,
            weight_decay: 1e-4,
        }
    }
}

fn softmax(logits: &mut [f32]) {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let mut sum = 0.0;
    for v in logits.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in logits.iter_mut() {
        *v /= sum.max(1e-30);
    }
}

impl Mlp {
    /// A fresh network with layer widths `widths` (input first, classes last).
    pub fn new(widths: &[usize], rng: &mut Rng) -> Self {
        let layers = widths
            .windows(2)
            .map(|w| Dense::new(w[0], w[1], rng))
            .collect();
        let inputs = widths.first().copied().unwrap_or(0);
        Mlp {
            mean: vec![0.0; inputs],
            deviation: vec![1.0; inputs],
            layers,
        }
    }

    pub fn inputs(&self) -> usize {
        self.mean.len()
    }

    pub fn classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    pub fn parameter_count(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.weights.len() + l.bias.len())
            .sum()
    }

    /// Sets the input standardisation from a training set.
    pub fn fit_standardisation(&mut self, rows: &[Vec<f32>]) {
        let n = rows.len().max(1) as f32;
        let dims = self.inputs();
        let mut mean = vec![0.0f32; dims];
        for r in rows {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += v / n;
            }
        }
        let mut var = vec![0.0f32; dims];
        for r in rows {
            for ((s, v), m) in var.iter_mut().zip(r).zip(&mean) {
                *s += (v - m) * (v - m) / n;
            }
        }
        self.mean = mean;
        self.deviation = var.iter().map(|v| v.sqrt().max(1e-3)).collect();
    }

    /// Class probabilities for one input (which must have `inputs()` values).
    pub fn predict(&self, input: &[f32]) -> Vec<f32> {
        let mut x: Vec<f32> = input
            .iter()
            .zip(self.mean.iter().zip(&self.deviation))
            .map(|(v, (m, d))| (v - m) / d)
            .collect();
        let mut y = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            layer.forward(&x, &mut y);
            if i + 1 < self.layers.len() {
                for v in &mut y {
                    *v = v.max(0.0);
                }
            }
            std::mem::swap(&mut x, &mut y);
        }
        softmax(&mut x);
        x
    }

    /// One epoch over `(input, class)` pairs in a shuffled order; returns the mean loss.
    pub fn train_epoch(
        &mut self,
        data: &[(Vec<f32>, usize)],
        config: &TrainConfig,
        adam: &mut Adam,
        rng: &mut Rng,
    ) -> f32 {
        let mut order: Vec<usize> = (0..data.len()).collect();
        rng.shuffle(&mut order);
        let mut grads: Vec<(Vec<f32>, Vec<f32>)> = self
            .layers
            .iter()
            .map(|l| (vec![0.0; l.weights.len()], vec![0.0; l.bias.len()]))
            .collect();
        let mut loss_sum = 0.0;
        let keep = 1.0 - config.dropout;
        for batch in order.chunks(config.batch.max(1)) {
            for g in &mut grads {
                g.0.iter_mut().for_each(|v| *v = 0.0);
                g.1.iter_mut().for_each(|v| *v = 0.0);
            }
            for &index in batch {
                let (input, class) = &data[index];
                // Forward, keeping every layer's input.
                let mut activations: Vec<Vec<f32>> = Vec::with_capacity(self.layers.len() + 1);
                activations.push(
                    input
                        .iter()
                        .zip(self.mean.iter().zip(&self.deviation))
                        .map(|(v, (m, d))| (v - m) / d)
                        .collect(),
                );
                for (i, layer) in self.layers.iter().enumerate() {
                    let mut y = Vec::new();
                    layer.forward(&activations[i], &mut y);
                    if i + 1 < self.layers.len() {
                        for v in &mut y {
                            // ReLU then inverted dropout.
                            *v = if *v > 0.0 && rng.uniform() < keep {
                                *v / keep
                            } else {
                                0.0
                            };
                        }
                    }
                    activations.push(y);
                }
                let Some(output) = activations.last_mut() else {
                    continue;
                };
                softmax(output);
                loss_sum -= output.get(*class).copied().unwrap_or(1e-30).max(1e-30).ln();
                let mut delta: Vec<f32> = output.clone();
                if let Some(d) = delta.get_mut(*class) {
                    *d -= 1.0;
                }
                for i in (0..self.layers.len()).rev() {
                    let layer = &self.layers[i];
                    let x = &activations[i];
                    let (gw, gb) = &mut grads[i];
                    for (o, d) in delta.iter().enumerate() {
                        gb[o] += d;
                        if *d != 0.0 {
                            let row = &mut gw[o * layer.inputs..(o + 1) * layer.inputs];
                            for (g, v) in row.iter_mut().zip(x) {
                                *g += d * v;
                            }
                        }
                    }
                    if i > 0 {
                        let mut previous = vec![0.0f32; layer.inputs];
                        for (o, d) in delta.iter().enumerate() {
                            if *d != 0.0 {
                                let row = &layer.weights[o * layer.inputs..(o + 1) * layer.inputs];
                                for (p, w) in previous.iter_mut().zip(row) {
                                    *p += d * w;
                                }
                            }
                        }
                        // Through the ReLU (and dropout): zero where the activation was zero.
                        for (p, a) in previous.iter_mut().zip(x) {
                            if *a <= 0.0 {
                                *p = 0.0;
                            }
                        }
                        delta = previous;
                    }
                }
            }
            let scale = 1.0 / batch.len() as f32;
            adam.step(&mut self.layers, &grads, scale, config);
        }
        loss_sum / data.len().max(1) as f32
    }

    /// Serialises to little-endian bytes.
    pub fn to_bytes(&self, out: &mut Vec<u8>) {
        push_u32(out, self.layers.len() as u32);
        push_u32(out, self.inputs() as u32);
        for l in &self.layers {
            push_u32(out, l.outputs as u32);
        }
        push_f32s(out, &self.mean);
        push_f32s(out, &self.deviation);
        for l in &self.layers {
            push_f32s(out, &l.weights);
            push_f32s(out, &l.bias);
        }
    }

    /// Parses what `to_bytes` wrote; returns the network and the bytes consumed.
    pub fn from_bytes(bytes: &[u8]) -> Result<(Self, usize), VoiceError> {
        let mut reader = Reader { bytes, at: 0 };
        let count = reader.u32()? as usize;
        if count == 0 || count > LAYERS_MAX {
            return Err(VoiceError::BadModel("layer count"));
        }
        let mut widths = vec![reader.u32()? as usize];
        for _ in 0..count {
            widths.push(reader.u32()? as usize);
        }
        if widths.iter().any(|w| *w == 0 || *w > LAYER_WIDTH_MAX) {
            return Err(VoiceError::BadModel("layer width"));
        }
        let mean = reader.f32s(widths[0])?;
        let deviation = reader.f32s(widths[0])?;
        let mut layers = Vec::with_capacity(count);
        for w in widths.windows(2) {
            let weights = reader.f32s(w[0] * w[1])?;
            let bias = reader.f32s(w[1])?;
            layers.push(Dense {
                inputs: w[0],
                outputs: w[1],
                weights,
                bias,
            });
        }
        Ok((
            Mlp {
                mean,
                deviation,
                layers,
            },
            reader.at,
        ))
    }
}

/// First and second moments of one layer's weights and biases.
type LayerMoments = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

/// Adam optimiser state.
#[derive(Debug, Clone)]
pub struct Adam {
    moments: Vec<LayerMoments>,
    steps: i32,
}

impl Adam {
    pub fn new(mlp: &Mlp) -> Self {
        Adam {
            moments: mlp
                .layers
                .iter()
                .map(|l| {
                    (
                        vec![0.0; l.weights.len()],
                        vec![0.0; l.weights.len()],
                        vec![0.0; l.bias.len()],
                        vec![0.0; l.bias.len()],
                    )
                })
                .collect(),
            steps: 0,
        }
    }

    fn step(
        &mut self,
        layers: &mut [Dense],
        grads: &[(Vec<f32>, Vec<f32>)],
        scale: f32,
        config: &TrainConfig,
    ) {
        const BETA1: f32 = 0.9;
        const BETA2: f32 = 0.999;
        self.steps += 1;
        let c1 = 1.0 - BETA1.powi(self.steps);
        let c2 = 1.0 - BETA2.powi(self.steps);
        let lr = config.learning_rate;
        let update = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], decay: f32| {
            for i in 0..p.len() {
                let grad = g[i] * scale + decay * p[i];
                m[i] = BETA1 * m[i] + (1.0 - BETA1) * grad;
                v[i] = BETA2 * v[i] + (1.0 - BETA2) * grad * grad;
                p[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + 1e-8);
            }
        };
        for ((layer, (gw, gb)), (mw, vw, mb, vb)) in
            layers.iter_mut().zip(grads).zip(self.moments.iter_mut())
        {
            update(&mut layer.weights, gw, mw, vw, config.weight_decay);
            update(&mut layer.bias, gb, mb, vb, 0.0);
        }
    }
}

pub(super) fn push_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(super) fn push_f32s(out: &mut Vec<u8>, values: &[f32]) {
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// A bounds-checked little-endian reader.
pub(super) struct Reader<'a> {
    pub bytes: &'a [u8],
    pub at: usize,
}

impl Reader<'_> {
    pub fn take(&mut self, n: usize) -> Result<&[u8], VoiceError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(VoiceError::BadModel("truncated"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }
    pub fn u32(&mut self) -> Result<u32, VoiceError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn f32s(&mut self, n: usize) -> Result<Vec<f32>, VoiceError> {
        let b = self.take(n.checked_mul(4).ok_or(VoiceError::BadModel("size"))?)?;
        let values: Vec<f32> = b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if values.iter().all(|v| v.is_finite()) {
            Ok(values)
        } else {
            Err(VoiceError::BadModel("non-finite value"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_problem_and_round_trips() {
        let mut rng = Rng::new(3);
        // Three Gaussian blobs in 4 dimensions.
        let centres = [
            [2.0, 0.0, 0.0, 1.0],
            [0.0, 2.0, 0.0, -1.0],
            [0.0, 0.0, 2.0, 0.0],
        ];
        let data: Vec<(Vec<f32>, usize)> = (0..300)
            .map(|i| {
                let c = i % 3;
                (
                    centres[c].iter().map(|m| m + 0.4 * rng.normal()).collect(),
                    c,
                )
            })
            .collect();
        let mut mlp = Mlp::new(&[4, 16, 3], &mut rng);
        let rows: Vec<Vec<f32>> = data.iter().map(|d| d.0.clone()).collect();
        mlp.fit_standardisation(&rows);
        let mut adam = Adam::new(&mlp);
        let config = TrainConfig {
            dropout: 0.0,
            learning_rate: 1e-2,
            ..TrainConfig::default()
        };
        let first = mlp.train_epoch(&data, &config, &mut adam, &mut rng);
        let mut last = first;
        for _ in 0..20 {
            last = mlp.train_epoch(&data, &config, &mut adam, &mut rng);
        }
        assert!(last < first * 0.5, "{first} -> {last}");
        let correct = data
            .iter()
            .filter(|(x, c)| {
                let p = mlp.predict(x);
                (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])) == Some(*c)
            })
            .count();
        assert!(correct >= 290, "{correct}");
        let mut bytes = Vec::new();
        mlp.to_bytes(&mut bytes);
        let (back, used) = Mlp::from_bytes(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(back, mlp);
        assert!(Mlp::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }
}
